package sdk

import (
	"encoding/json"
	"fmt"
)

// current is the module's state. A Wasm instance is a single-threaded
// process whose entry points are exports; they need package-level state,
// so this one global is the exception to "no globals".
var current guest

// guest holds what must outlive one export call: the registered policy,
// the data document and the buffers shared with the host. The buffers are
// referenced here so the garbage collector keeps them while the host
// holds their addresses.
type guest struct {
	handler  Func
	data     map[string]any
	settings Settings
	in       []byte // from the last sluice_alloc; valid until the next one
	out      []byte // the last decision; valid until the next sluice_decide
	// input is the decoded input of the call in progress: decoded in
	// place, it is copied once, into the policy's argument. What its
	// pointers refer to is new for every call.
	input Input
}

// alloc implements sluice_alloc.
func (g *guest) alloc(size int) []byte {
	g.in = make([]byte, max(size, 1))
	return g.in
}

// configure implements sluice_configure: doc is the JSON data document.
func (g *guest) configure(doc []byte) error {
	var data map[string]any
	if err := json.Unmarshal(doc, &data); err != nil {
		return fmt.Errorf("sdk: data document: %w", err)
	}
	g.data, g.settings = data, settingsOf(data)
	return nil
}

// settingsOf reads data.sluice.settings as the shipped Rego does: a switch
// is on only when it is the boolean true.
func settingsOf(data map[string]any) Settings {
	sluice, _ := data["sluice"].(map[string]any)
	settings, _ := sluice["settings"].(map[string]any)
	on := func(key string) bool {
		b, _ := settings[key].(bool)
		return b
	}
	return Settings{EnableLatest: on("enable_latest"), DigestOnly: on("digest_only"),
		CoalesceCredentialed: on("coalesce_credentialed")}
}

// decide implements sluice_decide on byte slices: it decodes the input,
// runs the policy and returns the encoded decision, kept in g.out.
func (g *guest) decide(action, input []byte) ([]byte, error) {
	if g.handler == nil {
		return nil, fmt.Errorf("sdk: no policy registered (call sdk.Handle from a package-level var)")
	}
	in, err := ParseInput(input)
	if err != nil {
		return nil, err
	}
	in.Action = string(action)
	return g.finish(&in)
}

// decideCompact implements sluice_decide_compact: input is the action and
// the input document in the compact layout.
func (g *guest) decideCompact(input []byte) ([]byte, error) {
	if g.handler == nil {
		return nil, fmt.Errorf("sdk: no policy registered (call sdk.Handle from a package-level var)")
	}
	in := &g.input
	if err := parseCompact(input, in); err != nil {
		return nil, err
	}
	return g.finish(in)
}

// finish runs the policy on a decoded input and encodes its decision.
func (g *guest) finish(in *Input) ([]byte, error) {
	in.Data, in.Settings = g.data, g.settings
	d, err := g.run(in)
	if err != nil {
		return nil, err
	}
	g.out = d.AppendJSON(g.out[:0])
	return g.out, nil
}

// run calls the policy, turning a panic into an error so that the host
// sees a failed decision and a log line rather than a dead instance.
func (g *guest) run(in *Input) (d Decision, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sdk: policy panicked: %v", r)
		}
	}()
	return g.handler(*in), nil
}
