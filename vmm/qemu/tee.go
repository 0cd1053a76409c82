package qemu

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/containerd/errdefs"

	"github.com/sccontainers/scc/vmm"
	"github.com/sccontainers/scc/vmm/confidential"
)

// IDs of the objects a confidential VM's command line links together.
const (
	memID  = "ram1"
	sevID  = "sev0"
	tdxID  = "tdx0"
	igvmID = "igvm0"
)

// teeParts are the pieces of the command line a TEE changes.
type teeParts struct {
	machine  string   // appended to the -M value
	cpu      string   // the -cpu model; "" keeps the accelerator's
	firmware []string // replaces -bios <Config.Firmware>
	objects  []string // -object arguments, after -m
}

// teeArgs builds the confidential guest part of the command line
// (QEMU docs/system/i386/amd-memory-encryption.rst and tdx.rst). cfg has
// passed Validate and the driver has resolved the accelerator and, for SNP,
// the C-bit position.
func teeArgs(cfg vmm.Config) (teeParts, error) {
	tee := cfg.TEE
	if cfg.Accel != vmm.AccelKVM {
		return teeParts{}, fmt.Errorf("qemu args: %s needs accel %q, not %q", tee.Type, vmm.AccelKVM, cfg.Accel)
	}
	// Guest memory comes from a memfd so that KVM can pair it with the
	// guest_memfd that backs the private (encrypted) pages.
	mem := fmt.Sprintf("memory-backend-memfd,id=%s,size=%dM,share=true,prealloc=false", memID, cfg.MemoryMiB)

	switch tee.Type {
	case vmm.TEESNP:
		s := tee.SNP
		if s.CBitPos == 0 || s.ReducedPhysBits == 0 {
			return teeParts{}, fmt.Errorf("qemu args: snp cbitpos and reduced-phys-bits are not resolved from the host CPU")
		}
		sev := fmt.Sprintf("sev-snp-guest,id=%s,cbitpos=%d,reduced-phys-bits=%d,policy=%#x",
			sevID, s.CBitPos, s.ReducedPhysBits, s.Policy)
		if s.KernelHashes {
			sev += ",kernel-hashes=on"
		}
		sev += ",host-data=" + base64.StdEncoding.EncodeToString(s.HostData[:])
		if s.IDBlock != "" {
			sev += ",id-block=" + s.IDBlock + ",id-auth=" + s.IDAuth
			if authorKey(s.IDAuth) {
				sev += ",author-key-enabled=on"
			}
		}
		p := teeParts{
			machine: ",confidential-guest-support=" + sevID + ",memory-backend=" + memID,
			cpu:     s.VCPUType,
			objects: []string{"-object", mem, "-object", sev},
		}
		if s.IGVM != "" {
			// The IGVM file holds the firmware and its launch directives;
			// -bios would load a second one.
			p.machine += ",igvm-cfg=" + igvmID
			p.objects = append(p.objects, "-object", "igvm-cfg,id="+igvmID+",file="+s.IGVM)
		} else {
			p.firmware = []string{"-bios", tee.Firmware}
		}
		return p, nil

	case vmm.TEETDX:
		obj, err := tdxObject(tee.TDX)
		if err != nil {
			return teeParts{}, err
		}
		return teeParts{
			// TDX runs the IOAPIC in userspace; the TDX module owns the
			// local APICs.
			machine:  ",kernel-irqchip=split,confidential-guest-support=" + tdxID + ",memory-backend=" + memID,
			cpu:      "host",
			firmware: []string{"-bios", tee.Firmware},
			objects:  []string{"-object", mem, "-object", obj},
		}, nil
	}
	return teeParts{}, fmt.Errorf("qemu args: tee type %q", tee.Type)
}

// tdxObject is the tdx-guest -object argument. The quote generation socket
// is a SocketAddress struct, which QEMU's TDX documentation passes in the
// JSON form of -object; without it the plain form does.
//
// sept-ve-disable is QEMU's default, and it is spelt out: the TD's
// ATTRIBUTES, which its quotes report and a verifier checks, must not
// follow a QEMU default, and a Linux guest panics at boot without it
// ("SEPT_VE_DISABLE attribute must be set") unless the TD is a debug TD.
func tdxObject(t vmm.TDXConfig) (string, error) {
	mrconfigid := base64.StdEncoding.EncodeToString(t.MRConfigID[:])
	if t.QuoteGenerationSocket == "" {
		return "tdx-guest,id=" + tdxID + ",sept-ve-disable=on,mrconfigid=" + mrconfigid, nil
	}
	addr, err := vmm.ParseQGSAddress(t.QuoteGenerationSocket)
	if err != nil {
		return "", fmt.Errorf("qemu args: %w", err)
	}
	qgs := map[string]string{"type": addr.Network}
	if addr.Network == "vsock" {
		qgs["cid"] = strconv.FormatUint(uint64(addr.CID), 10)
		qgs["port"] = strconv.FormatUint(uint64(addr.Port), 10)
	} else {
		qgs["path"] = addr.Path
	}
	b, err := json.Marshal(struct {
		QOMType       string            `json:"qom-type"`
		ID            string            `json:"id"`
		SEPTVEDisable bool              `json:"sept-ve-disable"`
		MRCfgID       string            `json:"mrconfigid"`
		QGS           map[string]string `json:"quote-generation-socket"`
	}{"tdx-guest", tdxID, true, mrconfigid, qgs})
	if err != nil {
		return "", fmt.Errorf("qemu args: %w", err)
	}
	return string(b), nil
}

// authorKey reports whether an ID_AUTH_INFO structure (base64) carries an
// author key, which QEMU must be told about: its AUTHOR_KEY_ALGO field
// (offset 4) is non-zero.
func authorKey(idAuth string) bool {
	b, err := base64.StdEncoding.DecodeString(idAuth)
	if err != nil || len(b) < 8 {
		return false
	}
	return binary.LittleEndian.Uint32(b[4:8]) != 0
}

// resolveTEE checks that this host and QEMU binary can launch cfg's
// confidential guest and fills in what comes from the host. why says how
// the accelerator was chosen.
func (d Driver) resolveTEE(cfg *vmm.Config, bin, why string) error {
	tee := cfg.TEE // WithDefaults made it cfg's own copy
	var errs []error
	ver, err := BinaryVersion(context.Background(), bin)
	if err == nil {
		err = CheckVersion(ver, tee)
	}
	if err != nil {
		errs = append(errs, err)
	}
	if cfg.Accel != vmm.AccelKVM {
		e := fmt.Errorf("%s needs KVM, but the accelerator is %s", tee.Type, cfg.Accel)
		if why != "" {
			e = fmt.Errorf("%w (%s)", e, why)
		}
		errs = append(errs, e)
	}
	if tee.Type == vmm.TEESNP && tee.SNP.CBitPos == 0 {
		hostSEV := d.SEVHost
		if hostSEV == nil {
			hostSEV = confidential.HostSEV
		}
		host := hostSEV()
		if err := host.CheckSNP(); err != nil {
			errs = append(errs, err)
		} else {
			tee.SNP.CBitPos, tee.SNP.ReducedPhysBits = host.CBitPos, host.ReducedPhysBits
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: cannot launch a %s guest: %w", errdefs.ErrFailedPrecondition, tee.Type, errors.Join(errs...))
	}
	return nil
}

// snapshotSupported fails for confidential guests: their memory and CPU
// state are encrypted with keys the host never sees, so QEMU blocks
// migration and with it Save and Restore.
func (v *VM) snapshotSupported(action string) error {
	if v.cfg.TEE.Confidential() {
		return fmt.Errorf("%s vm: %w: %s guests cannot be saved or restored", action, errdefs.ErrNotImplemented, v.cfg.TEE.Type)
	}
	return nil
}
