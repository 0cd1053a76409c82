package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/snp"
)

// Both TEE backends plug into the client.
var (
	_ Attester = (*snp.Attester)(nil)
	_ Attester = (*sim.Attester)(nil)
)

func TestResourcePath(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "default/key/1", want: "default/key/1"},
		{in: "/default/key/1", want: "default/key/1"},
		{in: "kbs:///default/key/1", want: "default/key/1"},
		{in: "kbs://kbs.example:8080/default/key/1", want: "default/key/1"},
		{in: "default/key", wantErr: true},
		{in: "default//1", wantErr: true},
		{in: "a/b/c/d", wantErr: true},
		{in: "a/b/c d", want: "a/b/c%20d"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := resourcePath(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("resourcePath(%q) = %q, want error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("resourcePath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

type fakeAttester struct{ calls int }

func (*fakeAttester) TEE() string { return "sim" }
func (a *fakeAttester) Evidence(context.Context, [64]byte) ([]byte, error) {
	a.calls++
	return []byte(`{}`), nil
}

// A refusal is reported as a ServerError carrying the ErrorInformation,
// and the client stops at the first refused step.
func TestServerError(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/kbs/v0/auth" {
			t.Errorf("unexpected request to %s", r.URL.Path)
		}
		w.Header().Set("Kbs-Tee", "sim")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"type":"https://github.com/confidential-containers/kbs/errors/PolicyDeny","detail":"no"}`))
	}))
	defer ts.Close()
	a := &fakeAttester{}
	c := &Client{URL: ts.URL, AllowHTTP: true, KeyType: ECP256}
	_, err := c.GetResource(context.Background(), "a/b/c", a)
	var se *ServerError
	if !errors.As(err, &se) {
		t.Fatalf("GetResource() = %v, want *ServerError", err)
	}
	if se.Status != http.StatusForbidden || !strings.HasSuffix(se.Type, "PolicyDeny") || se.Detail != "no" || se.TEE != "sim" {
		t.Fatalf("ServerError = %+v", se)
	}
	if a.calls != 0 {
		t.Fatal("evidence was produced although auth failed")
	}
}
