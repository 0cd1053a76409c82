//go:build critest

// Package critest runs cri-tools' CRI validation suite (critest) against a
// private containerd twice, with the runc runtime handler and with scc's,
// and compares the two. Everything runs in a network namespace of the
// test's own: a CNI bridge for the pods, a local registry on its loopback
// serving test images built here, containerd and critest.
//
// The suite takes long under QEMU TCG, so it runs only where SCC_CRITEST
// is set (make critest). Its reports go to SCC_CRITEST_REPORT (default
// build/critest): per handler the Ginkgo JSON and JUnit reports and
// critest's output, summary.md, containerd's log and the VMs' logs.
package critest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sccontainers/scc/internal/ctrd"
)

// skipSpecs are specs that cannot pass here with any runtime.
var skipSpecs = map[string]string{
	// critest pulls test-image-digest by the digest of the manifest
	// pushed upstream, which an image built here cannot have.
	"public image with digest should be pulled and removed": "the image is pinned to upstream's manifest digest",
}

// knownRuncFailures are specs that fail with runc too, because the test
// images are not upstream's (spec name -> why).
var knownRuncFailures = map[string]string{
	// Debian's static busybox is a standalone shell: sh runs the ls
	// applet in-process instead of executing the masked /bin/ls.
	"[k8s.io] Security Context bucket runtime should support MaskedPaths": "image: busybox's standalone shell runs applets in-process",
}

// knownSCCFailures are specs that pass with runc and fail with scc (spec
// name -> why): what a VM cannot share with the host; docs/critest.md
// explains each. The test fails on any other such spec, and on one listed
// here that passes.
var knownSCCFailures = map[string]string{
	"[k8s.io] Security Context NamespaceOption runtime should support HostIpc is true":                                                                                    "VM: the host's IPC namespace",
	"[k8s.io] Security Context NamespaceOption runtime should support HostNetwork is true":                                                                                "VM: the host's network stack",
	"[k8s.io] Streaming runtime should support streaming interfaces runtime should support portforward in host network":                                                   "VM: the host's network stack",
	"[k8s.io] Container Mount Propagation runtime should support mount propagation mount with 'rshared' should support propagation from host to container and vice versa": "VM: mounts made in the guest",
}

// sandboxerPasses are the known scc failures that pass with the shim as
// sandboxer (SCC_CRITEST_SANDBOXER=shim): it sees a host-network pod's
// port mappings and publishes them on the node's loopback.
var sandboxerPasses = map[string]bool{
	"[k8s.io] Streaming runtime should support streaming interfaces runtime should support portforward in host network": true,
}

// sandboxer is the scc handler's sandbox controller the run uses:
// SCC_CRITEST_SANDBOXER, "" (pause containers) by default, or "shim".
func sandboxer() string { return os.Getenv("SCC_CRITEST_SANDBOXER") }

// knownSCCFailure tells why spec name fails with scc, "" if it should not.
func knownSCCFailure(name string) string {
	if sandboxer() == "shim" && sandboxerPasses[name] {
		return ""
	}
	return knownSCCFailures[name]
}

func TestCritest(t *testing.T) {
	tools, err := findTools()
	if err != nil {
		t.Fatal(err)
	}
	reportDir := reportDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Hour)
	defer cancel()

	dir, err := os.MkdirTemp("/tmp", "scc-crit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ctrd.Clean(dir); err != nil {
			t.Errorf("clean %s: %v", dir, err)
		}
	})
	t.Cleanup(func() { collectLogs(t, dir, reportDir) })
	for _, d := range []string{"run", "logs", "tmp", "certs.d", "c/cni"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	netns := setupNetns(t, filepath.Base(dir))

	// The local registry, with every image critest pulls.
	client := netnsClient(netns)
	stopRegistry, err := startRegistry(ctx, tools.registry, dir, netns, client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopRegistry)
	images, err := pushImages(dir, tools.busybox, client)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range mirroredHosts(images) {
		if err := os.MkdirAll(filepath.Join(dir, "certs.d", h), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "certs.d", h, "hosts.toml"), []byte(hostsTOML(h)), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// containerd, CRI on a CNI bridge, the scc handler booting VMs.
	if err := os.WriteFile(filepath.Join(dir, "c", "cni", "10-critest.conflist"), []byte(cniConfig(filepath.Join(dir, "cni-ipam"))), 0o644); err != nil {
		t.Fatal(err)
	}
	sccConfig := filepath.Join(dir, "scc.toml")
	shimCfg := fmt.Sprintf("state_dir = %q\nguest_dir = %q\n\n[snapshot]\nenabled = false\n\n[vm]\nlog_dir = %q\nboot_timeout = \"120s\"\n",
		filepath.Join(dir, "run"), tools.guestDir, filepath.Join(dir, "logs"))
	if err := os.WriteFile(sccConfig, []byte(shimCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := startContainerd(ctx, daemonOptions{
		dir: filepath.Join(dir, "c"), binDir: tools.containerdBin, shimDir: tools.shimDir, netns: netns,
		cri:      &ctrd.CRIOptions{SCCConfig: sccConfig, SandboxImage: sandboxImage, Sandboxer: sandboxer()},
		certsDir: filepath.Join(dir, "certs.d"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAll(t, d, tools, dir) })
	imagesFile := filepath.Join(dir, "images.yaml")
	if err := os.WriteFile(imagesFile, []byte("defaultTestContainerImage: registry.k8s.io/e2e-test-images/busybox:1.29-2\n"+
		"webServerTestImage: registry.k8s.io/e2e-test-images/nginx:1.14-2\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	results := map[string]map[string]specResult{}
	for _, handler := range handlers() {
		out := filepath.Join(reportDir, handler)
		start := time.Now()
		if err := runCritest(ctx, tools, d, netns, dir, imagesFile, handler, out); err != nil {
			t.Fatalf("critest with %s: %v", handler, err)
		}
		rs, err := parseReportFile(filepath.Join(out, "report.json"))
		if err != nil {
			t.Fatalf("critest with %s: %v (see %s)", handler, err, filepath.Join(out, "critest.log"))
		}
		results[handler] = rs
		label := handler
		if handler != "runc" && sandboxer() != "" {
			label += " (sandboxer " + sandboxer() + ")"
		}
		t.Logf("critest with %s: %s in %s", label, count(rs), time.Since(start).Round(time.Second))
	}

	checkResults(t, results["runc"], results["scc"], reportDir)
}

// checkResults fails the test on a spec that fails with runc, or that
// passes with runc and fails with scc, unless it is a known failure; and
// on a known failure that passes, so that the lists shrink as bugs are
// fixed. It writes summary.md to reportDir.
func checkResults(t *testing.T, runc, scc map[string]specResult, reportDir string) {
	t.Helper()
	for name, r := range runc {
		known := knownRuncFailures[name] != ""
		switch {
		case !r.passed() && !r.skipped() && !known:
			t.Errorf("runc fails %q: %s", name, r.Message)
		case r.passed() && known:
			t.Errorf("runc now passes %q: remove it from knownRuncFailures and docs/critest.md", name)
		}
	}
	if runc == nil || scc == nil {
		return // one handler only: nothing to compare
	}
	c := compare(runc, scc)
	var summary bytes.Buffer
	writeSummary(&summary, runc, scc, c)
	if err := os.WriteFile(filepath.Join(reportDir, "summary.md"), summary.Bytes(), 0o644); err != nil {
		t.Error(err)
	}
	for _, name := range c.regressions {
		if knownSCCFailure(name) == "" {
			t.Errorf("scc fails %q, which passes with runc: %s (%s)", name, scc[name].Message, scc[name].Where)
		}
	}
	for name := range knownSCCFailures {
		if r, ok := scc[name]; ok && r.passed() && knownSCCFailure(name) != "" {
			t.Errorf("scc now passes %q: remove it from knownSCCFailures and docs/critest.md", name)
		}
	}
}

// handlers are the runtime handlers to run critest with:
// SCC_CRITEST_HANDLERS (comma-separated) or runc and scc.
func handlers() []string {
	if h := os.Getenv("SCC_CRITEST_HANDLERS"); h != "" {
		return strings.Split(h, ",")
	}
	return []string{"runc", "scc"}
}

// runCritest runs critest in the test's network namespace and containerd's
// IPC namespace, writing its reports and output to out.
func runCritest(ctx context.Context, tools tools, d *daemon, netns, dir, imagesFile, handler, out string) error {
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var skips []string
	for s := range skipSpecs {
		skips = append(skips, s)
	}
	sort.Strings(skips)
	args := []string{"--net=" + netnsPath(netns), "--ipc=" + d.ipcNS(), "--", tools.critest,
		"--runtime-endpoint", d.endpoint(), "--image-endpoint", d.endpoint(),
		"--test-images-file", imagesFile,
		"--ginkgo.json-report", filepath.Join(out, "report.json"),
		"--ginkgo.junit-report", filepath.Join(out, "junit.xml"),
		"--ginkgo.no-color", "--ginkgo.v",
		"--ginkgo.seed", "1",
		"--ginkgo.timeout", "3h",
		"--ginkgo.skip", strings.Join(skips, "|"),
	}
	if f := os.Getenv("SCC_CRITEST_FOCUS"); f != "" {
		args = append(args, "--ginkgo.focus", f)
	}
	if handler != "runc" {
		args = append(args, "--runtime-handler", handler)
	}
	logf, err := os.Create(filepath.Join(out, "critest.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Dir = filepath.Join(dir, "tmp")
	// critest makes its host paths (volumes, mount propagation, seccomp
	// profiles) in TMPDIR: below dir, they go away with it.
	cmd.Env = append(os.Environ(), "TMPDIR="+filepath.Join(dir, "tmp"))
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Run()
	if _, ok := err.(*exec.ExitError); ok {
		// critest exits non-zero when a spec fails: the report says which.
		err = nil
	}
	return err
}

// pushImages builds the test images and pushes them to the registry.
func pushImages(dir, busybox string, client *http.Client) ([]testImage, error) {
	helper, err := buildHelper(dir)
	if err != nil {
		return nil, err
	}
	images, err := testImages(busybox, helper)
	if err != nil {
		return nil, err
	}
	for _, ti := range images {
		byRepo := map[string][]string{}
		var repos []string
		for _, ref := range ti.refs {
			repo, tag, err := splitRef(ref)
			if err != nil {
				return nil, err
			}
			if byRepo[repo] == nil {
				repos = append(repos, repo)
			}
			byRepo[repo] = append(byRepo[repo], tag)
		}
		for _, repo := range repos {
			if err := push(client, repo, byRepo[repo], ti.img); err != nil {
				return nil, err
			}
		}
	}
	return images, nil
}

// cniConfig is a bridge network with host port mappings, its addresses
// kept under ipamDir.
func cniConfig(ipamDir string) string {
	return `{"cniVersion": "1.0.0", "name": "critest", "plugins": [
  {"type": "bridge", "bridge": "critest0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.99.8.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "` + ipamDir + `"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}`
}

// setupNetns creates network namespace name with its loopback up, and
// deletes it when the test ends.
func setupNetns(t *testing.T, name string) string {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("loopback up: %v: %s", err, out)
	}
	return name
}

// stopAll removes the pods left, stops containerd and ends any shim or VM
// process still running from the test's directory.
func stopAll(t *testing.T, d *daemon, tools tools, dir string) {
	t.Helper()
	if tools.crictl != "" {
		cmd := exec.Command(tools.crictl, "--runtime-endpoint", d.endpoint(), "--timeout", "2m", "rmp", "-fa")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("crictl rmp -fa: %v: %s", err, out)
		}
	}
	d.stop()
	deadline := time.Now().Add(20 * time.Second)
	for {
		pids := processesUnder(dir)
		for pid, cmdline := range pids {
			if strings.Contains(cmdline, "registry.yml") {
				delete(pids, pid) // the registry, stopped after
			}
		}
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for pid, cmdline := range pids {
				t.Errorf("process %d left behind: %s", pid, cmdline)
				unix.Kill(pid, unix.SIGKILL)
			}
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// processesUnder lists the processes whose command line names dir, the
// test's own directory: the shims, QEMU and containerd it started.
func processesUnder(dir string) map[int]string {
	found := map[int]string{}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(dir+"/")) {
			continue
		}
		var pid int
		fmt.Sscan(filepath.Base(filepath.Dir(p)), &pid)
		if pid != os.Getpid() {
			found[pid] = strings.ReplaceAll(string(bytes.TrimRight(b, "\x00")), "\x00", " ")
		}
	}
	return found
}

// collectLogs copies containerd's, the registry's and the VMs' logs into
// the report directory before the test's directory goes.
func collectLogs(t *testing.T, dir, reportDir string) {
	t.Helper()
	copyFile := func(src, dst string) {
		in, err := os.Open(src)
		if err != nil {
			return
		}
		defer in.Close()
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Log(err)
			return
		}
		out, err := os.Create(dst)
		if err != nil {
			t.Log(err)
			return
		}
		defer out.Close()
		io.Copy(out, in)
	}
	copyFile(filepath.Join(dir, "c", "containerd.log"), filepath.Join(reportDir, "containerd.log"))
	copyFile(filepath.Join(dir, "registry.log"), filepath.Join(reportDir, "registry.log"))
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*"))
	for _, l := range logs {
		copyFile(l, filepath.Join(reportDir, "vm-logs", filepath.Base(l)))
	}
}

func reportDir(t *testing.T) string {
	t.Helper()
	d := os.Getenv("SCC_CRITEST_REPORT")
	if d == "" {
		d = "../../build/critest"
	}
	d, err := filepath.Abs(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(d); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// tools are the programs and files the run needs.
type tools struct {
	critest, registry, crictl string
	containerdBin, shimDir    string
	guestDir, busybox         string
}

// findTools locates what the run needs; make critest builds or installs
// each (make deps build guest containerd).
func findTools() (tools, error) {
	if os.Geteuid() != 0 {
		return tools{}, fmt.Errorf("critest needs root (network namespaces, mounts, containerd)")
	}
	env := func(name, def string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		return def
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	cacheBin := env("SCC_CACHE_DIR", "/var/cache/scc") + "/tools/bin"
	tl := tools{
		critest:       env("CRITEST", cacheBin+"/critest"),
		registry:      env("REGISTRY", cacheBin+"/registry"),
		crictl:        env("CRICTL", cacheBin+"/crictl"),
		containerdBin: env("CONTAINERD_BIN", newestContainerd()),
		shimDir:       env("SCC_BIN", abs("../../bin")),
		guestDir:      env("GUEST_DIR", abs("../../build/guest")),
		busybox:       "/bin/busybox",
	}
	if !fileExists(tl.crictl) {
		tl.crictl = "" // only for removing leftover pods
	}
	for _, f := range []string{
		tl.critest, tl.registry,
		filepath.Join(tl.containerdBin, "containerd"), filepath.Join(tl.containerdBin, "ctr"),
		filepath.Join(tl.containerdBin, "containerd-shim-runc-v2"),
		filepath.Join(tl.shimDir, "containerd-shim-scc-v2"),
		filepath.Join(tl.guestDir, "manifest.json"),
		tl.busybox,
		"/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/portmap", "/usr/lib/cni/loopback",
	} {
		if !fileExists(f) {
			return tools{}, fmt.Errorf("%s is missing (make deps build guest containerd critest)", f)
		}
	}
	for _, p := range []string{"qemu-system-x86_64", "nsenter", "unshare", "ip", "iptables", "ipcmk"} {
		if _, err := exec.LookPath(p); err != nil {
			return tools{}, fmt.Errorf("%s is not installed (make deps)", p)
		}
	}
	return tl, nil
}

// newestContainerd is the bin directory of the newest containerd that
// make containerd built.
func newestContainerd() string {
	dirs, _ := filepath.Glob("/var/cache/scc/containerd-*/bin")
	if len(dirs) == 0 {
		return "/var/cache/scc/containerd/bin"
	}
	return dirs[len(dirs)-1]
}
