package critest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// registryPort is where the registry listens on the loopback of the test's
// own network namespace, which nothing else uses: any port is free there.
const registryPort = 5000

// registryConfig is a distribution registry storing blobs under dir,
// listening on 127.0.0.1 only.
func registryConfig(dir string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: 127.0.0.1:%d
`, dir, registryPort)
}

// startRegistry runs the registry binary in network namespace netns and
// returns once it answers. The registry is killed when ctx's test ends
// through the returned stop function.
func startRegistry(ctx context.Context, bin, dir, netns string, client *http.Client) (stop func(), err error) {
	cfg := filepath.Join(dir, "registry.yml")
	if err := os.WriteFile(cfg, []byte(registryConfig(filepath.Join(dir, "registry"))), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", "--net="+netnsPath(netns), "--", bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The registry must not outlive the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start registry: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(registryURL("/v2/"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return stop, nil
			}
		}
		select {
		case <-done:
			return nil, fmt.Errorf("registry exited: see %s", logf.Name())
		case <-ctx.Done():
			stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("registry did not answer: %v", err)
		}
	}
}

func registryURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", registryPort, path)
}

func registryHost() string { return fmt.Sprintf("127.0.0.1:%d", registryPort) }

// netnsClient is an HTTP client whose connections are made in network
// namespace netns, so that the test process reaches the registry on that
// namespace's loopback.
func netnsClient(netns string) *http.Client {
	tr := &http.Transport{
		DialContext:       netnsDialer(netnsPath(netns)),
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// netnsDialer dials from a thread moved into the network namespace at
// path, since a socket belongs to the namespace of the thread creating it,
// and moves the thread back before unlocking it.
func netnsDialer(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			back, err := os.Open("/proc/thread-self/ns/net")
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{err: err}
				return
			}
			defer back.Close()
			ns, err := os.Open(path)
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{err: err}
				return
			}
			defer ns.Close()
			if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
				runtime.UnlockOSThread()
				ch <- result{err: fmt.Errorf("enter network namespace: %w", err)}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			ch <- result{c, err}
			// A thread that cannot go back stays locked and ends with
			// this goroutine. Threads are not let end otherwise: a
			// child started from one gets its parent-death signal.
			if unix.Setns(int(back.Fd()), unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
		}()
		r := <-ch
		return r.c, r.err
	}
}

// push uploads an image's blobs and manifest to the registry under
// repository repo with each tag, with the OCI distribution API.
func push(client *http.Client, repo string, tags []string, img image) error {
	config, manifest, err := img.manifest()
	if err != nil {
		return err
	}
	blobs := []blob{config}
	for _, l := range img.layers {
		blobs = append(blobs, l.blob)
	}
	for _, b := range blobs {
		if err := pushBlob(client, repo, b); err != nil {
			return fmt.Errorf("push %s blob %s: %w", repo, b.desc.Digest, err)
		}
	}
	for _, tag := range tags {
		req, err := http.NewRequest(http.MethodPut, registryURL("/v2/"+repo+"/manifests/"+tag), bytes.NewReader(manifest.data))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", manifest.desc.MediaType)
		if err := do(client, req, http.StatusCreated); err != nil {
			return fmt.Errorf("push %s:%s manifest: %w", repo, tag, err)
		}
	}
	return nil
}

func pushBlob(client *http.Client, repo string, b blob) error {
	head, err := http.NewRequest(http.MethodHead, registryURL("/v2/"+repo+"/blobs/"+b.desc.Digest.String()), nil)
	if err != nil {
		return err
	}
	if do(client, head, http.StatusOK) == nil {
		return nil // already there
	}
	post, err := http.NewRequest(http.MethodPost, registryURL("/v2/"+repo+"/blobs/uploads/"), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(post)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("start upload: %s", resp.Status)
	}
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("upload location: %w", err)
	}
	q := loc.Query()
	q.Set("digest", b.desc.Digest.String())
	loc.RawQuery = q.Encode()
	put, err := http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(b.data))
	if err != nil {
		return err
	}
	put.Header.Set("Content-Type", "application/octet-stream")
	return do(client, put, http.StatusCreated)
}

func do(client *http.Client, req *http.Request, want int) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s: %s", req.Method, redact(req.URL), resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// redact drops the query (upload state) from a URL for error messages.
func redact(u *url.URL) string {
	c := *u
	c.RawQuery = ""
	return c.String()
}

// hostsTOML tells containerd to pull host's images from the local
// registry (containerd's registry host configuration, one directory per
// host under its config_path).
func hostsTOML(host string) string {
	return fmt.Sprintf("server = \"https://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", host, registryHost())
}

func netnsPath(name string) string { return "/var/run/netns/" + name }
