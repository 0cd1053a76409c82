package pull

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sccontainers/scc/attest/client"
	"github.com/sccontainers/scc/imagesplit/layercrypt"
	"github.com/sccontainers/scc/internal/forward"
)

// jweAnnotation holds the layer key wrapped to JWE recipients (ocicrypt).
const jweAnnotation = "org.opencontainers.image.enc.keys.jwe"

// KeyGetter finds the keys that may open an encrypted layer.
type KeyGetter interface {
	Keys(ctx context.Context, desc ocispec.Descriptor) ([]layercrypt.DecryptKey, error)
}

// ResourceGetter fetches a secret from the key broker: attestation, then
// the resource at path (repository/type/tag).
type ResourceGetter interface {
	GetResource(ctx context.Context, path string) ([]byte, error)
}

// Broker is a key broker reached through the forwarded channel, attested
// to with Attester.
type Broker struct {
	Client   *client.Client
	Attester client.Attester
}

// NewBroker returns the key broker behind the channel's "kbs" target.
// certSHA256 pins its certificate; plainHTTP speaks HTTP instead.
func NewBroker(ch Dialer, certSHA256 string, plainHTTP bool, a client.Attester) *Broker {
	c := &client.Client{
		URL:             "https://" + forward.TargetKBS,
		CertFingerprint: certSHA256,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return ch.Dial(ctx, forward.TargetKBS)
		},
		// A P-256 session key: generating RSA-3072 under emulation takes
		// seconds.
		KeyType: client.ECP256,
	}
	if plainHTTP {
		c.URL, c.AllowHTTP = "http://"+forward.TargetKBS, true
	}
	return &Broker{Client: c, Attester: a}
}

// GetResource attests and fetches one resource.
func (b *Broker) GetResource(ctx context.Context, path string) ([]byte, error) {
	return b.Client.GetResource(ctx, path, b.Attester)
}

// BrokerKeys gets layer keys from the key broker: the key-encryption key a
// layer's kbs:/// reference names (Confidential Containers' annotation),
// or, for layers wrapped to JWE recipients, the private keys held at
// JWEResources. Each resource is fetched once.
type BrokerKeys struct {
	Broker       ResourceGetter
	JWEResources []string

	mu    sync.Mutex
	cache map[string][]byte // resource path -> secret, guarded by mu
}

// Keys returns the keys to try on the layer desc, best first.
func (k *BrokerKeys) Keys(ctx context.Context, desc ocispec.Descriptor) ([]layercrypt.DecryptKey, error) {
	var keys []layercrypt.DecryptKey
	if packet := desc.Annotations[layercrypt.KBSAnnotation]; packet != "" {
		kid, path, err := keyReference(packet)
		if err != nil {
			return nil, err
		}
		kek, err := k.fetch(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", kid, err)
		}
		keys = append(keys, &layercrypt.KBSKey{KID: kid, KEK: kek})
	}
	if desc.Annotations[jweAnnotation] != "" && len(k.JWEResources) > 0 {
		var errs []error
		for _, path := range k.JWEResources {
			pem, err := k.fetch(ctx, path)
			if err != nil {
				errs = append(errs, fmt.Errorf("jwe key %s: %w", path, err))
				continue
			}
			keys = append(keys, layercrypt.JWEPrivateKey{PEM: pem})
		}
		if len(keys) == 0 {
			return nil, errors.Join(errs...)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("encrypted layer has neither a kbs:/// key reference nor a JWE recipient whose key the runtime names (confidential.jwe_keys): %w", errdefs.ErrFailedPrecondition)
	}
	return keys, nil
}

// fetch gets a resource from the broker once.
func (k *BrokerKeys) fetch(ctx context.Context, path string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s, ok := k.cache[path]; ok {
		return s, nil
	}
	s, err := k.Broker.GetResource(ctx, path)
	if err != nil {
		var se *client.ServerError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("the key broker refused it: %w: %w", err, errdefs.ErrPermissionDenied)
		}
		return nil, fmt.Errorf("get it from the key broker: %w", err)
	}
	if k.cache == nil {
		k.cache = make(map[string][]byte)
	}
	k.cache[path] = s
	return s, nil
}

// keyReference reads the kid of a CoCo annotation packet (base64 of JSON
// {"kid", "wrapped_data", "iv", "wrap_type"}) and returns it with its
// broker resource path.
func keyReference(packet string) (kid, path string, err error) {
	raw, err := base64.StdEncoding.DecodeString(packet)
	if err != nil {
		return "", "", fmt.Errorf("%s annotation is not base64: %v: %w", layercrypt.KBSAnnotation, err, errdefs.ErrInvalidArgument)
	}
	var p struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", "", fmt.Errorf("%s annotation: %v: %w", layercrypt.KBSAnnotation, err, errdefs.ErrInvalidArgument)
	}
	rest, ok := strings.CutPrefix(p.KID, "kbs://")
	if ok {
		// kbs://<broker>/repo/type/tag: the broker is the runtime's.
		_, path, ok = strings.Cut(rest, "/")
	}
	parts := strings.Split(path, "/")
	if !ok || len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", fmt.Errorf("key reference %q: %w: %w", p.KID, layercrypt.ErrBadKID, errdefs.ErrInvalidArgument)
	}
	return p.KID, path, nil
}
