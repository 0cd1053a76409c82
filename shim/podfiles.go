package shim

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podFilesDir, in a sandbox's shared directory, holds a sandbox API pod's
// files. It cannot be a container's id, whose first character containerd
// wants alphanumeric.
const podFilesDir = ".pod"

// podShmOptions are those of the pod's /dev/shm, as containerd's CRI
// mounts it for a pause container.
const podShmOptions = "mode=1777,size=65536k"

// podFiles are what containerd's CRI leaves to a sandboxer, and makes for
// a pause container: the pod's /etc/hostname, /etc/hosts and
// /etc/resolv.conf, and the /dev/shm its containers share. They are bound
// into each of the pod's containers as CRI binds its own: host files,
// shared with the guest like every bind mount's source. They live below
// the shared directory, so removing the sandbox's state unmounts the
// /dev/shm tmpfs with it.
type podFiles struct {
	dir string // "" for none
}

// writePodFiles makes the pod's files below sharedDir: hostname the pod's
// or else the node's, the node's hosts, the pod's DNS configuration or
// else the node's resolv.conf, and a tmpfs for /dev/shm.
func writePodFiles(sharedDir string, cri *runtime.PodSandboxConfig) (podFiles, error) {
	f := podFiles{dir: filepath.Join(sharedDir, podFilesDir)}
	if err := os.Mkdir(f.dir, 0o755); err != nil {
		return podFiles{}, fmt.Errorf("pod files: %w", err)
	}
	hostname := cri.GetHostname()
	if hostname == "" {
		var err error
		if hostname, err = os.Hostname(); err != nil {
			return podFiles{}, fmt.Errorf("pod hostname: %w", err)
		}
	}
	if err := os.WriteFile(f.path("hostname"), []byte(hostname+"\n"), 0o644); err != nil {
		return podFiles{}, fmt.Errorf("pod hostname: %w", err)
	}
	hosts, err := os.ReadFile("/etc/hosts")
	if err != nil {
		return podFiles{}, fmt.Errorf("pod hosts: %w", err)
	}
	if err := os.WriteFile(f.path("hosts"), hosts, 0o644); err != nil {
		return podFiles{}, fmt.Errorf("pod hosts: %w", err)
	}
	var resolv []byte
	if dns := cri.GetDnsConfig(); dns != nil {
		resolv = []byte(resolvConf(dns))
	} else if resolv, err = os.ReadFile("/etc/resolv.conf"); err != nil {
		return podFiles{}, fmt.Errorf("pod resolv.conf: %w", err)
	}
	if err := os.WriteFile(f.path("resolv.conf"), resolv, 0o644); err != nil {
		return podFiles{}, fmt.Errorf("pod resolv.conf: %w", err)
	}
	if err := os.Mkdir(f.path("shm"), 0o755); err != nil {
		return podFiles{}, fmt.Errorf("pod /dev/shm: %w", err)
	}
	if err := unix.Mount("shm", f.path("shm"), "tmpfs", unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV, podShmOptions); err != nil {
		return podFiles{}, fmt.Errorf("mount pod /dev/shm: %w", err)
	}
	return f, nil
}

func (f podFiles) path(name string) string { return filepath.Join(f.dir, name) }

// resolvConf is a resolv.conf of a pod's DNS configuration.
func resolvConf(dns *runtime.DNSConfig) string {
	var b strings.Builder
	if s := dns.GetSearches(); len(s) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(s, " "))
	}
	for _, s := range dns.GetServers() {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if o := dns.GetOptions(); len(o) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(o, " "))
	}
	return b.String()
}

// mountInto binds the pod's files into a container's spec, where the
// container mounts nothing of its own, as CRI does: /etc/hostname,
// /etc/hosts and /etc/resolv.conf (read-only with a read-only rootfs),
// and /dev/shm in place of the container's own tmpfs.
func (f podFiles) mountInto(spec *specs.Spec) {
	if f.dir == "" {
		return
	}
	ro := spec.Root != nil && spec.Root.Readonly
	for _, name := range []string{"hostname", "hosts", "resolv.conf"} {
		dst := "/etc/" + name
		if slices.ContainsFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == dst }) {
			continue
		}
		opts := []string{"rbind", "rprivate"}
		if ro {
			opts = append(opts, "ro")
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: dst, Type: "bind", Source: f.path(name), Options: opts})
	}
	shm := specs.Mount{Destination: "/dev/shm", Type: "bind", Source: f.path("shm"), Options: []string{"rbind", "rprivate"}}
	i := slices.IndexFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev/shm" })
	switch {
	case i < 0:
		spec.Mounts = append(spec.Mounts, shm)
	case spec.Mounts[i].Type == "tmpfs":
		// The container's own, from the default spec: the pod's instead.
		spec.Mounts[i] = shm
	}
}
