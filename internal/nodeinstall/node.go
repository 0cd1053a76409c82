package nodeinstall

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// NodeLabel marks the nodes where the scc runtime handler is ready; the
// RuntimeClass's nodeSelector keeps scc pods on them.
const NodeLabel = "scc.io/runtime"

// HandlerReady asks the CRI runtime listening on socket whether it serves
// the runtime handler: containerd reads its config only when it starts, so
// a handler install added is there only after a restart.
func HandlerReady(ctx context.Context, socket, handler string) (bool, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false, fmt.Errorf("connect to CRI at %s: %w", socket, err)
	}
	defer conn.Close()
	resp, err := runtime.NewRuntimeServiceClient(conn).Status(ctx, &runtime.StatusRequest{Verbose: true})
	if err != nil {
		return false, fmt.Errorf("CRI status at %s: %w", socket, err)
	}
	// containerd 2.x lists its handlers; 1.7 only shows its config.
	if slices.ContainsFunc(resp.GetRuntimeHandlers(), func(h *runtime.RuntimeHandler) bool { return h.GetName() == handler }) {
		return true, nil
	}
	var cfg struct {
		Containerd struct {
			Runtimes map[string]json.RawMessage `json:"runtimes"`
		} `json:"containerd"`
	}
	if s, ok := resp.GetInfo()["config"]; ok && json.Unmarshal([]byte(s), &cfg) == nil {
		if _, ok := cfg.Containerd.Runtimes[handler]; ok {
			return true, nil
		}
	}
	return false, nil
}

// WaitHandler polls HandlerReady every interval until the handler is
// served or ctx ends. Errors (containerd restarting) are retried; the
// last one is returned with the context's.
func WaitHandler(ctx context.Context, socket, handler string, interval time.Duration) error {
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ok, err := HandlerReady(cctx, socket, handler)
		cancel()
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), last)
		case <-time.After(interval):
		}
	}
}

// DefaultServiceAccountDir is where a pod finds its service account's
// token and the cluster's CA.
const DefaultServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// APIServer is the Kubernetes API as a pod reaches it.
type APIServer struct {
	URL string // https://host:port
	// TokenFile is read at each request: projected tokens are rotated.
	TokenFile string
	Client    *http.Client
}

// InClusterAPI returns the API server of the cluster the calling pod runs
// in, from the environment Kubernetes gives every pod and the service
// account directory saDir (DefaultServiceAccountDir when empty).
func InClusterAPI(saDir string) (APIServer, error) {
	if saDir == "" {
		saDir = DefaultServiceAccountDir
	}
	h, p := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if h == "" || p == "" {
		return APIServer{}, errors.New("not in a Kubernetes pod: KUBERNETES_SERVICE_HOST/PORT unset")
	}
	ca, err := os.ReadFile(filepath.Join(saDir, "ca.crt"))
	if err != nil {
		return APIServer{}, fmt.Errorf("read cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return APIServer{}, fmt.Errorf("no certificate in %s", filepath.Join(saDir, "ca.crt"))
	}
	return APIServer{
		URL:       "https://" + net.JoinHostPort(h, p),
		TokenFile: filepath.Join(saDir, "token"),
		Client: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		},
	}, nil
}

// LabelNode sets NodeLabel to "true" on node, or removes it when set is
// false (a JSON merge patch: other labels are left alone).
func (a APIServer) LabelNode(ctx context.Context, node string, set bool) error {
	var value any // null removes the label
	if set {
		value = "true"
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{NodeLabel: value}}})
	if err != nil {
		return err
	}
	token, err := os.ReadFile(a.TokenFile)
	if err != nil {
		return fmt.Errorf("read service account token: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, a.URL+"/api/v1/nodes/"+url.PathEscape(node), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/merge-patch+json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := a.Client.Do(req)
	if err != nil {
		return fmt.Errorf("label node %s: %w", node, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("label node %s: %s: %s", node, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
