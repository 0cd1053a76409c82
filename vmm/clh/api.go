package clh

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

// The subset of cloud-hypervisor's VmConfig (its OpenAPI description,
// vmm/src/api/openapi/cloud-hypervisor.yaml) the driver sets. Optional
// fields are omitted when zero so that cloud-hypervisor's own defaults
// apply.

// VMConfig is the body of PUT /vm.create.
type VMConfig struct {
	CPUs     CPUsConfig      `json:"cpus"`
	Memory   MemoryConfig    `json:"memory"`
	Payload  PayloadConfig   `json:"payload"`
	FS       []FSConfig      `json:"fs,omitempty"`
	RNG      *RNGConfig      `json:"rng,omitempty"`
	Serial   ConsoleConfig   `json:"serial"`
	Console  ConsoleConfig   `json:"console"`
	Vsock    *VsockConfig    `json:"vsock,omitempty"`
	Platform *PlatformConfig `json:"platform,omitempty"`
}

// CPUsConfig is VmConfig.cpus.
type CPUsConfig struct {
	BootVCPUs int `json:"boot_vcpus"`
	MaxVCPUs  int `json:"max_vcpus"`
}

// MemoryConfig is VmConfig.memory.
type MemoryConfig struct {
	Size   int64 `json:"size"` // bytes
	Shared bool  `json:"shared,omitempty"`
}

// PayloadConfig is VmConfig.payload: what the VM boots.
type PayloadConfig struct {
	Firmware  string `json:"firmware,omitempty"`
	Kernel    string `json:"kernel,omitempty"`
	Cmdline   string `json:"cmdline,omitempty"`
	Initramfs string `json:"initramfs,omitempty"`
	IGVM      string `json:"igvm,omitempty"`
	HostData  string `json:"host_data,omitempty"` // hex, SEV-SNP
}

// FSConfig is one virtio-fs device, served by a vhost-user daemon.
type FSConfig struct {
	Tag       string `json:"tag"`
	Socket    string `json:"socket"`
	NumQueues int    `json:"num_queues"`
	QueueSize int    `json:"queue_size"`
}

// RNGConfig is VmConfig.rng.
type RNGConfig struct {
	Src string `json:"src"`
}

// Console modes (ConsoleMode).
const (
	ModeOff    = "Off"
	ModeFile   = "File"
	ModeSocket = "Socket"
)

// ConsoleConfig is VmConfig.serial or VmConfig.console.
type ConsoleConfig struct {
	Mode   string `json:"mode"`
	File   string `json:"file,omitempty"`
	Socket string `json:"socket,omitempty"`
}

// VsockConfig is VmConfig.vsock.
type VsockConfig struct {
	CID    int64  `json:"cid"`
	Socket string `json:"socket"`
}

// PlatformConfig is VmConfig.platform; it selects a confidential guest.
type PlatformConfig struct {
	TDX    bool `json:"tdx,omitempty"`
	SEVSNP bool `json:"sev_snp,omitempty"`
}

// VM states (VmState).
const (
	StateCreated  = "Created"
	StateRunning  = "Running"
	StateShutdown = "Shutdown"
	StatePaused   = "Paused"
)

// VMInfo is the answer of GET /vm.info.
type VMInfo struct {
	Config           json.RawMessage `json:"config"`
	State            string          `json:"state"`
	MemoryActualSize int64           `json:"memory_actual_size,omitempty"`
}

// PingResponse is the answer of GET /vmm.ping.
type PingResponse struct {
	BuildVersion string   `json:"build_version,omitempty"`
	Version      string   `json:"version"`
	Pid          int64    `json:"pid,omitempty"`
	Features     []string `json:"features,omitempty"`
}

type snapshotConfig struct {
	DestinationURL string `json:"destination_url"`
}

type restoreConfig struct {
	SourceURL string `json:"source_url"`
}

// APIError is a non-2xx answer of the cloud-hypervisor API.
type APIError struct {
	Endpoint string
	Status   int
	Body     string // cloud-hypervisor's error text
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("cloud-hypervisor %s: HTTP %d", e.Endpoint, e.Status)
	if b := strings.TrimSpace(e.Body); b != "" {
		msg += ": " + b
	}
	return msg
}

// client talks to one cloud-hypervisor API socket.
type client struct {
	http *http.Client
}

// apiBase is where the API lives; the host part is ignored on a unix
// socket, the path is the API's.
const apiBase = "http://localhost/api/v1/"

func newClient(socket string) *client {
	var d net.Dialer
	return &client{http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socket)
		},
		// Each request is its own short exchange; a kept-alive connection
		// would only outlive a VMM that quit.
		DisableKeepAlives: true,
	}}}
}

// put sends PUT /<endpoint> with body (JSON) unless it is nil.
func (c *client) put(ctx context.Context, endpoint string, body any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("cloud-hypervisor %s: %w", endpoint, err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, apiBase+endpoint, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.do(req, endpoint, nil)
}

// get sends GET /<endpoint> and decodes the JSON answer into out.
func (c *client) get(ctx context.Context, endpoint string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, apiBase+endpoint, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	return c.do(req, endpoint, out)
}

func (c *client) do(req *http.Request, endpoint string, out any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cloud-hypervisor %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("cloud-hypervisor %s: read answer: %w", endpoint, err)
	}
	if resp.StatusCode/100 != 2 {
		return &APIError{Endpoint: endpoint, Status: resp.StatusCode, Body: string(b)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("cloud-hypervisor %s: decode answer: %w", endpoint, err)
		}
	}
	return nil
}

func (c *client) close() { c.http.CloseIdleConnections() }
