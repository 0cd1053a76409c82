package guestpull

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Registry is distribution's registry serving from a directory.
type Registry struct {
	// Addr is where it listens (127.0.0.1:port), plain HTTP.
	Addr string
	// Storage is its filesystem storage's root.
	Storage string
	cmd     *exec.Cmd
	done    chan struct{}
}

// StartRegistry runs the registry binary bin with its storage and log in
// dir, on a free port of 127.0.0.1, and returns once it answers. It dies
// with the calling process; Stop ends it sooner.
func StartRegistry(ctx context.Context, bin, dir string) (*Registry, error) {
	r := &Registry{Storage: filepath.Join(dir, "storage"), done: make(chan struct{})}
	if err := os.MkdirAll(r.Storage, 0o700); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r.Addr = ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(dir, "registry.yml")
	yml := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", r.Storage, r.Addr)
	if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	r.cmd = exec.Command(bin, "serve", cfg)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start registry: %w", err)
	}
	go func() { r.cmd.Wait(); close(r.done) }()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Addr+"/v2/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		select {
		case <-r.done:
			return nil, fmt.Errorf("registry exited (log %s)", logf.Name())
		case <-ctx.Done():
			r.Stop()
			return nil, fmt.Errorf("registry on %s did not answer (log %s): %w", r.Addr, logf.Name(), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop ends the registry.
func (r *Registry) Stop() {
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
	}
}

// BlobPath is the file the registry serves blob hex (sha256) from.
func (r *Registry) BlobPath(hex string) string {
	return filepath.Join(r.Storage, "docker/registry/v2/blobs/sha256", hex[:2], hex, "data")
}
