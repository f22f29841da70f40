package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/policy/opaplugins"
)

// openPolicyConfig reads --policy-config (OPA's configuration format) and
// prepares OPA's plugins. The options it returns go to policy.Load; the
// runtime starts once the Set exists (startPolicyConfig). Without the
// flag it returns nothing.
func openPolicyConfig(ctx context.Context, cfg *runConfig, reg prometheus.Registerer, log *slog.Logger) (*opaplugins.Runtime, []policy.Option, error) {
	if cfg.PolicyConfig == "" {
		return nil, nil, nil
	}
	bs, err := os.ReadFile(cfg.PolicyConfig)
	if err != nil {
		return nil, nil, fmt.Errorf("--policy-config: %w", err)
	}
	id := cfg.NodeName
	if id == "" {
		id = "sluice"
	}
	rt, err := opaplugins.New(ctx, bs, opaplugins.WithLogger(log.With("component", "opa")),
		opaplugins.WithRegisterer(reg), opaplugins.WithID(id))
	if err != nil {
		return nil, nil, fmt.Errorf("--policy-config %s: %w", cfg.PolicyConfig, err)
	}
	return rt, rt.Options(), nil
}

// startPolicyConfig starts the plugins of rt (nil: none) for pol; the
// function it returns stops them, flushing decision logs for up to 5 s.
func startPolicyConfig(ctx context.Context, rt *opaplugins.Runtime, pol *policy.Set) (stop func(), err error) {
	if rt == nil {
		return func() {}, nil
	}
	if err := rt.Start(ctx, pol); err != nil {
		return nil, err
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		rt.Stop(sctx)
	}, nil
}
