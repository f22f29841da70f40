package opaplugins

import (
	"context"
	"fmt"
	"log/slog"
	"maps"

	"github.com/open-policy-agent/opa/v1/logging"
)

// opaLogger adapts a slog.Logger to OPA's logging.Logger, so OPA's
// plugins log through the node's handler.
type opaLogger struct {
	l      *slog.Logger
	fields map[string]any
}

var _ logging.Logger = (*opaLogger)(nil)

func newOPALogger(l *slog.Logger) *opaLogger { return &opaLogger{l: l} }

func (o *opaLogger) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !o.l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(o.fields))
	for k, v := range o.fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	o.l.LogAttrs(ctx, level, fmt.Sprintf(format, args...), attrs...)
}

func (o *opaLogger) Debug(format string, args ...any) { o.log(slog.LevelDebug, format, args) }
func (o *opaLogger) Info(format string, args ...any)  { o.log(slog.LevelInfo, format, args) }
func (o *opaLogger) Warn(format string, args ...any)  { o.log(slog.LevelWarn, format, args) }
func (o *opaLogger) Error(format string, args ...any) { o.log(slog.LevelError, format, args) }

func (o *opaLogger) WithFields(fields map[string]any) logging.Logger {
	f := maps.Clone(o.fields)
	if f == nil {
		f = map[string]any{}
	}
	maps.Copy(f, fields)
	return &opaLogger{l: o.l, fields: f}
}

// GetLevel reports the most verbose level the handler takes.
func (o *opaLogger) GetLevel() logging.Level {
	ctx := context.Background()
	switch {
	case o.l.Enabled(ctx, slog.LevelDebug):
		return logging.Debug
	case o.l.Enabled(ctx, slog.LevelInfo):
		return logging.Info
	case o.l.Enabled(ctx, slog.LevelWarn):
		return logging.Warn
	}
	return logging.Error
}

// SetLevel is a no-op: the node's handler sets the level.
func (*opaLogger) SetLevel(logging.Level) {}
