package tests

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sccontainers/scc/attest/kbs"
	"github.com/sccontainers/scc/attest/vtpm"
	"github.com/sccontainers/scc/imagesplit"
	"github.com/sccontainers/scc/imagesplit/layercrypt"
	"github.com/sccontainers/scc/internal/ctrd"
	"github.com/sccontainers/scc/internal/guestpull"
	"github.com/sccontainers/scc/internal/ocilayout"
	"github.com/sccontainers/scc/shim"
)

// ccHandler is the CRI runtime handler of confidential containers in
// these tests: scc with scc's snapshotter.
const ccHandler = "scc-cc"

// startSnapshotter runs `scc snapshotter` with its state in dir, and
// stops it when the test ends. It returns its socket.
func startSnapshotter(t *testing.T, ctx context.Context, dir string) string {
	t.Helper()
	sock := filepath.Join(dir, "snapshotter.sock")
	cmd := exec.Command(filepath.Join(env.binDir, "scc"), "snapshotter", "--root", filepath.Join(dir, "snapshotter"), "--address", sock)
	logf, err := os.Create(filepath.Join(dir, "snapshotter.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start scc snapshotter: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Errorf("snapshotter socket %s left behind", sock)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("scc snapshotter exited: %s", b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("scc snapshotter did not make its socket")
		}
	}
}

// startGuestPullCRI starts containerd with CRI, scc's snapshotter and the
// ccHandler runtime handler, whose shim configuration is ccConfig.
func startGuestPullCRI(t *testing.T, ctx context.Context, ccConfig string) *criEnv {
	t.Helper()
	crictl := crictlPath()
	if _, err := os.Stat(crictl); err != nil {
		t.Fatalf("crictl missing (make tools): %v", err)
	}
	dir := filepath.Join(env.dir, "cricc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := startSnapshotter(t, ctx, dir)
	d, err := ctrd.Start(ctx, ctrd.Options{
		Dir:     dir,
		BinDir:  containerdBin(),
		ShimDir: env.binDir,
		CRI: &ctrd.CRIOptions{SCCConfig: env.config, SandboxImage: imageRef,
			GuestPull: &ctrd.GuestPullHandler{Name: ccHandler, SCCConfig: ccConfig, SnapshotterAddress: sock}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(context.Background()) })
	var img bytes.Buffer
	if err := ocilayout.WriteBusybox(&img, ocilayout.BusyboxOptions{Busybox: "/bin/busybox", Ref: imageRef}); err != nil {
		t.Fatal(err)
	}
	imp := d.CtrIn(ctx, "k8s.io", "images", "import", "-")
	imp.Stdin = &img
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("import: %v: %s", err, out)
	}
	return &criEnv{d: d, crictl: crictl, dir: dir}
}

// ccPod runs a pod on the confidential handler. Its config names the
// handler in the annotation containerd's CRI reads when crictl pulls an
// image for it (crictl pull has no --runtime).
func ccPod(t *testing.T, ctx context.Context, c *criEnv, name string) *criPod {
	t.Helper()
	cfg := writeJSON(t, filepath.Join(c.dir, name+"-pod.json"), map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid"},
		"annotations":   map[string]string{"io.containerd.cri.runtime-handler": ccHandler},
		"log_directory": filepath.Join(c.dir, "logs", name),
		"linux":         map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
	})
	id := c.run(t, ctx, "runp", "--runtime", ccHandler, cfg)
	t.Cleanup(func() {
		ctx := context.Background()
		ep := "unix://" + c.d.Address()
		exec.CommandContext(ctx, c.crictl, "--runtime-endpoint", ep, "stopp", id).Run()
		exec.CommandContext(ctx, c.crictl, "--runtime-endpoint", ep, "rmp", "-f", id).Run()
	})
	return &criPod{c: c, id: id, cfg: cfg}
}

// runToExit creates a container of image ref in the pod, with cmd if
// given (else the image's), starts it, waits for it to exit and returns
// its status and log.
func (p *criPod) runToExit(t *testing.T, ctx context.Context, name, ref string, cmd []string) (criStatus, string) {
	t.Helper()
	config := map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": ref},
		"log_path": name + ".log",
	}
	if cmd != nil {
		config["command"] = cmd
	}
	path := writeJSON(t, filepath.Join(p.c.dir, p.id[:12]+"-"+name+".json"), config)
	id := p.c.run(t, ctx, "create", p.id, path, p.cfg)
	p.c.run(t, ctx, "start", id)
	st := p.c.waitStatus(t, ctx, id, 2*time.Minute, func(s criStatus) bool { return s.State == "CONTAINER_EXITED" })
	logs := p.c.run(t, ctx, "logs", id)
	p.c.run(t, ctx, "rm", id)
	return st, logs
}

// writeConfidentialConfig is confidentialConfig with every container
// confidential when all is set.
func writeConfidentialConfig(t *testing.T, measurement [48]byte, all bool) string {
	t.Helper()
	p := confidentialConfig(t, measurement)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if all {
		b = bytes.Replace(b, []byte("[confidential]\nenabled = false"), []byte("[confidential]\nenabled = true"), 1)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCRIConfidentialImage pulls an encrypted image through CRI for a pod
// on the confidential handler: containerd fetches only the manifest and
// the config (scc's snapshotter has it skip every layer), the guest pulls
// and decrypts the layers, and the container prints the secret line. No
// layer blob reaches containerd's content store, and the confidential
// layer's marker is nowhere on the host. ctr runs it too, with the
// snapshotter named.
func TestCRIConfidentialImage(t *testing.T) {
	requireEnv(t)
	setupConfidential(t)
	ctx := testContext(t)
	kbsKey, err := layercrypt.NewKBSKey("kbs:///default/image-key/cri")
	if err != nil {
		t.Fatal(err)
	}
	if err := confidentialEnv.broker.Server.SetResource(ctx, kbsKey.ResourcePath(), kbsKey.KEK); err != nil {
		t.Fatal(err)
	}
	si := pushSecretImage(t, "cri-cc:v1", imagesplit.ByIndex{0, 1}, kbsKey)
	ccConfig := writeConfidentialConfig(t, confidentialEnv.broker.Measurement, true)
	c := startGuestPullCRI(t, ctx, ccConfig)
	pod := ccPod(t, ctx, c, "ccpod")

	c.run(t, ctx, "pull", "--pod-config", pod.cfg, si.Ref)
	st, logs := pod.runToExit(t, ctx, "secret", si.Ref, []string{"cat", "/secret.txt"})
	if st.ExitCode != 0 || strings.TrimSpace(logs) != si.Secret {
		t.Fatalf("container exited %d (%s), log %q; want the secret line %q", st.ExitCode, st.Reason, logs, si.Secret)
	}

	// containerd has the manifest and the config, no layer.
	out, err := c.d.CtrIn(ctx, "k8s.io", "content", "ls", "-q").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range si.Layers {
		if strings.Contains(string(out), l.Digest.String()) {
			t.Errorf("layer %s is in containerd's content store", l.Digest)
		}
	}
	if !strings.Contains(string(out), si.Digest.String()) {
		t.Errorf("the manifest %s is not in containerd's content store:\n%s", si.Digest, out)
	}

	// ctr, on the same containerd, with the snapshotter named.
	pull := c.d.CtrIn(ctx, ctrd.Namespace, "image", "pull", "--plain-http", "--snapshotter", "scc", si.Ref)
	if out, err := pull.CombinedOutput(); err != nil {
		t.Fatalf("ctr image pull: %v: %s", err, out)
	}
	run := c.d.CtrIn(ctx, ctrd.Namespace, "run", "--rm", "--snapshotter", "scc", "--runtime", runtimeName,
		"--runtime-config-path", ccConfig, si.Ref, "ctr-cc", "cat", "/secret.txt")
	var stderr bytes.Buffer
	run.Stderr = &stderr
	if out, err := run.Output(); err != nil || strings.TrimSpace(string(out)) != si.Secret {
		t.Errorf("ctr run: %v, output %q (%s); want the secret line", err, out, stderr.String())
	}

	if found := findOnHost(si.Marker, hostDirs()...); len(found) > 0 {
		t.Errorf("the confidential layer's marker is on the host: %s", strings.Join(found, ", "))
	}
	if found := findOnHost(si.Secret, hostDirs()...); len(found) > 0 {
		// The container's log holds the line it printed; nothing else
		// may.
		var other []string
		for _, f := range found {
			if !strings.Contains(f, string(filepath.Separator)+"logs"+string(filepath.Separator)) {
				other = append(other, f)
			}
		}
		if len(other) > 0 {
			t.Errorf("the secret line is stored on the host: %s", strings.Join(other, ", "))
		}
	}
}

// TestCRIGuestPullNeedsConfidential runs a pod whose handler uses scc's
// snapshotter but whose configuration does not make containers
// confidential: its container is refused with an error that says so,
// rather than started on the snapshotter's empty rootfs.
func TestCRIGuestPullNeedsConfidential(t *testing.T) {
	requireEnv(t)
	setupConfidential(t)
	ctx := testContext(t)
	si := pushSecretImage(t, "cri-plain:v1", nil)
	c := startGuestPullCRI(t, ctx, env.config)
	pod := ccPod(t, ctx, c, "plainpod")
	c.run(t, ctx, "pull", "--pod-config", pod.cfg, si.Ref)
	path := writeJSON(t, filepath.Join(c.dir, "plain.json"), map[string]any{
		"metadata": map[string]any{"name": "plain"},
		"image":    map[string]any{"image": si.Ref},
		"command":  []string{"cat", "/secret.txt"},
		"log_path": "plain.log",
	})
	id := c.run(t, ctx, "create", pod.id, path, pod.cfg)
	ep := "unix://" + c.d.Address()
	out, err := exec.CommandContext(ctx, c.crictl, "--runtime-endpoint", ep, "start", id).CombinedOutput()
	if err == nil {
		t.Fatalf("a container without its image started: %s", out)
	}
	if !strings.Contains(string(out), "not confidential") {
		t.Errorf("the refusal does not say why: %s", out)
	}
	c.run(t, ctx, "rm", id)
}

// TestCRIConfidentialImageConfig runs, through CRI on the confidential
// handler, an image whose config sets the entrypoint, command,
// environment, working directory and a numeric user: the container runs
// what the image says, as the image's user with the groups its
// /etc/passwd and /etc/group give, which containerd could not look up
// (it has none of the image's files); the guest does. The guest pulls
// the manifest containerd resolved: after the tag moves to another image,
// a new container of the pod still runs the one containerd pulled.
func TestCRIConfidentialImageConfig(t *testing.T) {
	requireEnv(t)
	setupConfidential(t)
	ctx := testContext(t)
	kbsKey, err := layercrypt.NewKBSKey("kbs:///default/image-key/cri-config")
	if err != nil {
		t.Fatal(err)
	}
	if err := confidentialEnv.broker.Server.SetResource(ctx, kbsKey.ResourcePath(), kbsKey.KEK); err != nil {
		t.Fatal(err)
	}
	push := func() guestpull.SecretImage {
		si, err := guestpull.PushSecretImage(ctx, guestpull.ImageOptions{
			Busybox: "/bin/busybox", Registry: confidentialEnv.registry.Addr, Repo: "cri-config:v1",
			Rule: imagesplit.ByIndex{1}, Recipients: []layercrypt.Recipient{kbsKey}, WorkDir: t.TempDir(),
			Files: map[string]string{
				"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/data:/bin/sh\n",
				"etc/group":  "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
				"data/.keep": "",
			},
			Config: &v1.Config{
				Entrypoint: []string{"/bin/sh", "-c"},
				Cmd:        []string{`echo "$GREETING $(pwd) $(id -u):$(id -g) $(id -G)"`},
				Env:        []string{"GREETING=hello-from-the-image"},
				WorkingDir: "/data",
				User:       "1000",
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return si
	}
	first := push()
	c := startGuestPullCRI(t, ctx, writeConfidentialConfig(t, confidentialEnv.broker.Measurement, true))
	pod := ccPod(t, ctx, c, "configpod")
	c.run(t, ctx, "pull", "--pod-config", pod.cfg, first.Ref)

	st, logs := pod.runToExit(t, ctx, "image-process", first.Ref, nil)
	if want := "hello-from-the-image /data 1000:1000 1000 2000"; st.ExitCode != 0 || strings.TrimSpace(logs) != want {
		t.Errorf("container exited %d (%s), log %q; want %q", st.ExitCode, st.Reason, logs, want)
	}

	moved := push()
	if moved.Digest == first.Digest {
		t.Fatal("the second push is the same image")
	}
	st, logs = pod.runToExit(t, ctx, "after-tag-moved", first.Ref, []string{"cat", "/secret.txt"})
	if st.ExitCode != 0 || strings.TrimSpace(logs) != first.Secret {
		t.Errorf("after the tag moved: exit %d, log %q; want the pulled image's secret %q (the new image's is %q)", st.ExitCode, logs, first.Secret, moved.Secret)
	}
}

// TestCRIConfidentialImageVTPM: a pod VM with a vTPM and no TEE attests
// with its monitor's quote, whose log holds each image the guest pulled
// (PCR 12), extended before the guest asked for the image's keys. The key
// broker trusts the VM's attestation key (the shim writes it beside the
// VM's state) and its boot PCR, and replays the log: with a policy that
// lists another image the key is refused and the container fails saying
// so; listing the image lets a new container of the pod run.
func TestCRIConfidentialImageVTPM(t *testing.T) {
	requireEnv(t)
	requireSwtpm(t)
	setupConfidential(t)
	ctx := testContext(t)
	kbsKey, err := layercrypt.NewKBSKey("kbs:///default/image-key/vtpm")
	if err != nil {
		t.Fatal(err)
	}
	if err := confidentialEnv.broker.Server.SetResource(ctx, kbsKey.ResourcePath(), kbsKey.KEK); err != nil {
		t.Fatal(err)
	}
	si := pushSecretImage(t, "cri-vtpm:v1", imagesplit.ByIndex{1}, kbsKey)
	cfg := writeConfidentialConfig(t, confidentialEnv.broker.Measurement, true)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, bytes.Replace(b, []byte("[vm]\n"), []byte("[vm]\ntpm = true\n"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	// The boot PCR of the configuration's VMs, from one of them.
	boot := hex.EncodeToString(quotedPCRs(t, attestVM(t, ctx, cfg))[vtpm.PCRBoot])

	c := startGuestPullCRI(t, ctx, cfg)
	pod := ccPod(t, ctx, c, "vtpmpod")
	c.run(t, ctx, "pull", "--pod-config", pod.cfg, si.Ref)
	akPub, err := os.ReadFile(filepath.Join(env.run, pod.id[:32], shim.VTPMAKName))
	if err != nil {
		t.Fatalf("the pod VM's attestation key: %v", err)
	}
	ak := vtpm.AKDigest(akPub)
	t.Cleanup(func() {
		if err := confidentialEnv.broker.SetImages(context.Background(), nil); err != nil {
			t.Errorf("restore the broker's policy: %v", err)
		}
	})
	setPolicy := func(images ...string) {
		t.Helper()
		if err := confidentialEnv.broker.Server.SetPolicy(ctx, kbs.Policy{Attestation: map[string]kbs.TEEPolicy{vtpm.TEE: {
			Allow: true, TrustedAKs: []string{hex.EncodeToString(ak[:])},
			PCRs: map[string][]string{"8": {boot}}, Images: images,
		}}}); err != nil {
			t.Fatal(err)
		}
	}

	other := "sha256:" + strings.Repeat("0f", 32)
	setPolicy(other)
	path := writeJSON(t, filepath.Join(c.dir, "vtpm-refused.json"), map[string]any{
		"metadata": map[string]any{"name": "refused"},
		"image":    map[string]any{"image": si.Ref},
		"command":  []string{"cat", "/secret.txt"},
		"log_path": "refused.log",
	})
	id := c.run(t, ctx, "create", pod.id, path, pod.cfg)
	out, err := exec.CommandContext(ctx, c.crictl, "--runtime-endpoint", "unix://"+c.d.Address(), "start", id).CombinedOutput()
	if err == nil {
		t.Fatalf("the container ran on an image the policy does not list: %s", out)
	}
	want := "verify vtpm evidence: image not allowed by policy: the guest runs image " + si.Digest.String()
	if !strings.Contains(string(out), want) {
		t.Errorf("error %s does not say %q", out, want)
	}
	c.run(t, ctx, "rm", id)

	setPolicy(other, si.Digest.String())
	st, logs := pod.runToExit(t, ctx, "listed", si.Ref, []string{"cat", "/secret.txt"})
	if st.ExitCode != 0 || strings.TrimSpace(logs) != si.Secret {
		t.Fatalf("container exited %d (%s), log %q; want the secret line", st.ExitCode, st.Reason, logs)
	}
}
