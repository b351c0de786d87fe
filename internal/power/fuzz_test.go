package power

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/gorilla/mux"

	"breakglass/internal/api/wire"
	"breakglass/internal/verbs"
)

// FuzzRunOnlyParsedVerbsReachTheKeyholder: whatever the input, the keyholder
// is asked for a verb only when verbs.Parse accepts it, and then for exactly
// that verb.
func FuzzRunOnlyParsedVerbsReachTheKeyholder(f *testing.F) {
	for _, tc := range badVerbs {
		f.Add(tc.in, true)
	}
	for _, v := range verbs.Names() {
		f.Add(string(v), false)
	}
	f.Fuzz(func(t *testing.T, verb string, asAgent bool) {
		kh, tr := &fakeKeyholder{}, newFakeTranscript()
		svc, err := New(Config{Keyholder: kh, Transcript: tr, Policy: PolicyAllow})
		if err != nil {
			t.Fatal(err)
		}
		actor := alice
		if asAgent {
			actor = agent
		}
		_, runErr := svc.Run(context.Background(), sessionA, verb, actor)
		v, parseErr := verbs.Parse(verb)
		if parseErr == nil && v.TakesArgs {
			// Without its argv the one verb with arguments is refused too.
			parseErr = v.CheckArgs(nil)
		}
		calls := kh.Calls()
		switch {
		case parseErr != nil && (len(calls) != 0 || runErr == nil):
			t.Fatalf("%q: refused by Parse but reached the keyholder (%d calls, err %v)", verb, len(calls), runErr)
		case parseErr == nil && (len(calls) != 1 || calls[0].verb != verb):
			t.Fatalf("%q: a verb, but the keyholder saw %v", verb, calls)
		}
	})
}

// FuzzAgentPath sends arbitrary path segments to the agent's endpoint with a
// live token: nothing but the six verbs reaches the keyholder.
func FuzzAgentPath(f *testing.F) {
	for _, tc := range badVerbs {
		f.Add(url.PathEscape(tc.in))
	}
	f.Add("status")
	f.Add("status%20")
	f.Add("%2e%2e%2fstatus")
	f.Fuzz(func(t *testing.T, segment string) {
		kh, tr := &fakeKeyholder{}, newFakeTranscript()
		svc, err := New(Config{Keyholder: kh, Transcript: tr, Policy: PolicyAllow})
		if err != nil {
			t.Fatal(err)
		}
		r := mux.NewRouter()
		for _, rt := range svc.AgentRoutes() {
			if rt.Open != nil {
				r.HandleFunc(rt.Path, rt.Open).Methods(rt.Method)
			}
		}
		tok, revoke := svc.tokens.Issue(sessionA)
		defer revoke()
		req, err := http.NewRequest("POST", "http://web"+wire.AgentVerbPrefix+segment, nil)
		if err != nil {
			return // not a request a client could send
		}
		req.Header.Set(wire.TokenHeader, tok)
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		for _, c := range kh.Calls() {
			if _, err := verbs.Parse(c.verb); err != nil {
				t.Fatalf("segment %q reached the keyholder as %q", segment, c.verb)
			}
		}
		if w.Code == http.StatusOK && len(kh.Calls()) != 1 {
			t.Fatalf("segment %q: 200 without exactly one keyholder call", segment)
		}
	})
}
