package agent

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

// idPattern is what libcontainer accepts as a container id; exec ids follow
// the same rule so they are safe in paths and logs.
var idPattern = regexp.MustCompile(`^[\w+\-.]+$`)

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

func validateID(kind, id string) error {
	switch {
	case id == "":
		return invalid("%s id is empty", kind)
	case len(id) > 1024:
		return invalid("%s id is longer than 1024 bytes", kind)
	case id == "." || id == ".." || !idPattern.MatchString(id):
		return invalid("%s id %q: only letters, digits and _+-. are allowed", kind, id)
	}
	return nil
}

// parseSpec decodes and checks the OCI spec of a CreateContainer request.
func parseSpec(raw []byte) (*specs.Spec, error) {
	if len(raw) == 0 {
		return nil, invalid("spec is empty")
	}
	var spec specs.Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, invalid("decode spec: %v", err)
	}
	if spec.Process == nil {
		return nil, invalid("spec has no process")
	}
	if err := checkProcess(spec.Process); err != nil {
		return nil, err
	}
	return &spec, nil
}

// parseProcess decodes and checks the OCI process of an ExecProcess request.
func parseProcess(raw []byte) (*specs.Process, error) {
	if len(raw) == 0 {
		return nil, invalid("process is empty")
	}
	var p specs.Process
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, invalid("decode process: %v", err)
	}
	if err := checkProcess(&p); err != nil {
		return nil, err
	}
	return &p, nil
}

func checkProcess(p *specs.Process) error {
	if len(p.Args) == 0 || p.Args[0] == "" {
		return invalid("process has no args")
	}
	if p.Cwd == "" {
		// runc requires it; an absent cwd otherwise fails deep in init.
		return invalid("process has no cwd")
	}
	return nil
}

// checkRootfs checks the rootfs of a CreateContainer request.
func checkRootfs(m *agentapi.Mount) error {
	if m == nil || m.GetSource() == "" {
		return invalid("rootfs is not set")
	}
	if m.GetType() == "" {
		if m.GetTarget() != "" {
			return invalid("rootfs target %q given without a type to mount", m.GetTarget())
		}
		if !filepath.IsAbs(m.GetSource()) {
			return invalid("rootfs %q is not an absolute guest path", m.GetSource())
		}
	}
	return nil
}

// checkTerminal makes the two places that say whether a process has a
// terminal agree, rather than guess which one the host meant.
func checkTerminal(p *specs.Process, stdio *agentapi.StdioConfig) error {
	if p.Terminal != stdio.GetTerminal() {
		return invalid("process.terminal is %v but stdio.terminal is %v", p.Terminal, stdio.GetTerminal())
	}
	return nil
}

// newLibcontainerProcess converts an OCI process to libcontainer's.
func newLibcontainerProcess(p *specs.Process, init bool) (*libcontainer.Process, error) {
	lp := &libcontainer.Process{
		Args:            p.Args,
		Env:             p.Env,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Cwd:             p.Cwd,
		Label:           p.SelinuxLabel,
		NoNewPrivileges: &p.NoNewPrivileges,
		AppArmorProfile: p.ApparmorProfile,
		Scheduler:       p.Scheduler,
		IOPriority:      p.IOPriority,
		Init:            init,
	}
	if p.ConsoleSize != nil {
		lp.ConsoleWidth = uint16(p.ConsoleSize.Width)
		lp.ConsoleHeight = uint16(p.ConsoleSize.Height)
	}
	if c := p.Capabilities; c != nil {
		b := boundingSet()
		lp.Capabilities = &configs.Capabilities{
			Bounding:    withinBounds(c.Bounding, b),
			Effective:   withinBounds(c.Effective, b),
			Inheritable: withinBounds(c.Inheritable, b),
			Permitted:   withinBounds(c.Permitted, b),
			Ambient:     withinBounds(c.Ambient, b),
		}
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	for _, r := range p.Rlimits {
		t, ok := rlimitTypes[r.Type]
		if !ok {
			return nil, invalid("unknown rlimit %q", r.Type)
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: t, Hard: r.Hard, Soft: r.Soft})
	}
	aff, err := configs.ConvertCPUAffinity(p.ExecCPUAffinity)
	if err != nil {
		return nil, invalid("execCPUAffinity: %v", err)
	}
	lp.CPUAffinity = aff
	return lp, nil
}

var rlimitTypes = map[string]int{
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
}

// parseResources decodes the LinuxResources of an UpdateContainer request.
func parseResources(raw []byte) (*specs.LinuxResources, error) {
	if len(raw) == 0 {
		return nil, invalid("resources are empty")
	}
	var r specs.LinuxResources
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, invalid("decode resources: %v", err)
	}
	return &r, nil
}
