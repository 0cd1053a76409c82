package nodeinstall

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeCRI answers Status like containerd: with handlers (2.x) or only its
// config (1.7). It becomes ready after readyAfter calls.
type fakeCRI struct {
	runtime.UnimplementedRuntimeServiceServer
	handlers   []string
	config     string
	readyAfter int32
	calls      atomic.Int32
}

func (f *fakeCRI) Status(context.Context, *runtime.StatusRequest) (*runtime.StatusResponse, error) {
	resp := &runtime.StatusResponse{Info: map[string]string{}}
	if f.calls.Add(1) <= f.readyAfter {
		return resp, nil
	}
	for _, h := range f.handlers {
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtime.RuntimeHandler{Name: h})
	}
	if f.config != "" {
		resp.Info["config"] = f.config
	}
	return resp, nil
}

func serveCRI(t *testing.T, f *fakeCRI) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "cri.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtime.RegisterRuntimeServiceServer(srv, f)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return sock
}

func TestHandlerReady(t *testing.T) {
	for _, tc := range []struct {
		name string
		cri  *fakeCRI
		want bool
	}{
		{"containerd 2.x with scc", &fakeCRI{handlers: []string{"", "runc", "scc"}}, true},
		{"containerd 2.x without scc", &fakeCRI{handlers: []string{"", "runc"}}, false},
		{"containerd 1.7 with scc", &fakeCRI{config: `{"containerd":{"runtimes":{"runc":{},"scc":{"runtimeType":"io.containerd.scc.v2"}}}}`}, true},
		{"containerd 1.7 without scc", &fakeCRI{config: `{"containerd":{"runtimes":{"runc":{}}}}`}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := HandlerReady(context.Background(), serveCRI(t, tc.cri), RuntimeName)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("ready %v, want %v", got, tc.want)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := HandlerReady(ctx, filepath.Join(t.TempDir(), "none.sock"), RuntimeName); err == nil {
		t.Error("no error without a CRI server")
	}
}

func TestWaitHandler(t *testing.T) {
	f := &fakeCRI{handlers: []string{"scc"}, readyAfter: 3}
	sock := serveCRI(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := WaitHandler(ctx, sock, RuntimeName, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.Load(); n != 4 {
		t.Errorf("%d status calls, want 4", n)
	}

	never := serveCRI(t, &fakeCRI{handlers: []string{"runc"}})
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := WaitHandler(ctx, never, RuntimeName, 10*time.Millisecond); err == nil {
		t.Error("wait for a handler that never comes ended without error")
	}
}

func TestLabelNode(t *testing.T) {
	type request struct {
		method, path, contentType, auth string
		body                            map[string]any
	}
	var got []request
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		json.Unmarshal(b, &body)
		got = append(got, request{r.Method, r.URL.EscapedPath(), r.Header.Get("Content-Type"), r.Header.Get("Authorization"), body})
		if r.URL.Path == "/api/v1/nodes/missing" {
			http.Error(w, `{"reason":"NotFound"}`, http.StatusNotFound)
			return
		}
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()

	sa := t.TempDir()
	write(t, filepath.Join(sa, "token"), "tok-1\n", 0o600)
	write(t, filepath.Join(sa, "ca.crt"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})), 0o644)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(u.Host)
	t.Setenv("KUBERNETES_SERVICE_HOST", host)
	t.Setenv("KUBERNETES_SERVICE_PORT", port)
	api, err := InClusterAPI(sa)
	if err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	if err := api.LabelNode(ctx, "node-1", true); err != nil {
		t.Fatal(err)
	}
	// A rotated token is picked up.
	write(t, filepath.Join(sa, "token"), "tok-2", 0o600)
	if err := api.LabelNode(ctx, "node-1", false); err != nil {
		t.Fatal(err)
	}
	if err := api.LabelNode(ctx, "missing", true); err == nil {
		t.Error("no error for a missing node")
	}
	if len(got) != 3 {
		t.Fatalf("%d requests", len(got))
	}
	for i, want := range []struct {
		auth  string
		value any
	}{{"Bearer tok-1", "true"}, {"Bearer tok-2", nil}} {
		r := got[i]
		if r.method != http.MethodPatch || r.path != "/api/v1/nodes/node-1" || r.contentType != "application/merge-patch+json" || r.auth != want.auth {
			t.Errorf("request %d: %+v", i, r)
		}
		labels, _ := r.body["metadata"].(map[string]any)["labels"].(map[string]any)
		v, ok := labels[NodeLabel]
		if !ok || v != want.value || len(labels) != 1 {
			t.Errorf("request %d labels %v, want %s=%v only", i, labels, NodeLabel, want.value)
		}
	}
}

func TestInClusterAPIOutsideCluster(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := InClusterAPI(t.TempDir()); err == nil {
		t.Error("no error outside a cluster")
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "6443")
	sa := t.TempDir()
	write(t, filepath.Join(sa, "ca.crt"), "not a certificate", 0o644)
	if _, err := InClusterAPI(sa); err == nil {
		t.Error("no error for a CA without certificates")
	}
}
