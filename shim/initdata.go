package shim

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/containerd/errdefs"

	agent "github.com/sccontainers/scc/api/agent/v1"
)

// AnnotationInitData carries a pod's init data, base64 (standard
// encoding): the tenant's configuration that its verifier checks, such as
// the key broker's address and policies. The guest's trusted monitor
// extends its SHA-256 into the init data PCR before any container starts,
// and a verifier pins vtpm.InitDataPCR(data). It is no VM setting and
// needs no enable_annotations entry: it decides nothing on the host, it
// only becomes part of what the VM attests to.
const AnnotationInitData = "io.scc.init_data"

// maxInitData bounds the decoded init data.
const maxInitData = 1 << 20

// initData returns the init data a pod's annotations carry, if any.
func initData(annotations map[string]string) ([]byte, error) {
	v, ok := annotations[AnnotationInitData]
	if !ok {
		return nil, nil
	}
	if base64.StdEncoding.DecodedLen(len(v)) > maxInitData {
		return nil, fmt.Errorf("annotation %s: more than %d bytes: %w", AnnotationInitData, maxInitData, errdefs.ErrInvalidArgument)
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("annotation %s: not base64 of init data: %w", AnnotationInitData, errdefs.ErrInvalidArgument)
	}
	return b, nil
}

// bindInitData has the guest bind the pod's init data to the VM.
func (sb *sandbox) bindInitData(ctx context.Context, data []byte) error {
	if _, err := sb.agent.SetInitData(ctx, &agent.SetInitDataRequest{InitData: data}); err != nil {
		return fmt.Errorf("bind init data: %w", fromAgent(err))
	}
	return nil
}
