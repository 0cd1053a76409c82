package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sccontainers/scc/imagesplit"
	"github.com/sccontainers/scc/imagesplit/layercrypt"
)

// listFlag collects a repeatable, comma-separable flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func runImagesplit(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("imagesplit", flag.ContinueOnError)
	in := fs.String("in", "", "input OCI image layout directory")
	inRef := fs.String("in-ref", "", "image of the input layout to take (org.opencontainers.image.ref.name); needed if it holds several")
	out := fs.String("out", "", "output OCI image layout directory (created if missing)")
	outRef := fs.String("out-ref", "", "name of the written image in the output layout")
	integ := fs.String("integrity-dir", "", "where the erofs images and dm-verity trees of the plain layers go (default OUT.integrity)")
	var layers, paths, recipients listFlag
	fs.Var(&layers, "confidential-layers", "0-based indexes (bottom layer 0) of the confidential layers, e.g. 1,2")
	fs.Var(&paths, "confidential-path", "a layer holding anything under this path is confidential (repeatable)")
	above := fs.String("above-base", "", "OCI layout of the base image: every layer above it is confidential")
	fs.Var(&recipients, "recipient", "jwe:PUBLIC-KEY.pem to wrap layer keys to (repeatable)")
	kid := fs.String("kbs-key", "", "wrap layer keys with a new key-encryption key served by the key broker as kbs:///REPO/TYPE/TAG")
	keyOut := fs.String("key-out", "", "file to write the new key-encryption key to (32 raw bytes), with --kbs-key")
	saltHex := fs.String("salt", "", "hex dm-verity salt for every layer (default: random per layer)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *in == "" || *out == "" {
		return errors.New("imagesplit: --in and --out are required")
	}

	o := imagesplit.Options{IntegrityDir: *integ, Progress: os.Stderr}
	if o.IntegrityDir == "" {
		o.IntegrityDir = filepath.Clean(*out) + ".integrity"
	}
	if *saltHex != "" {
		s, err := hex.DecodeString(*saltHex)
		if err != nil {
			return fmt.Errorf("imagesplit: --salt: %w", err)
		}
		o.Salt = s
	}

	var err error
	if o.Rule, err = imagesplitRule(ctx, layers, paths, *above); err != nil {
		return err
	}

	for _, r := range recipients {
		file, ok := strings.CutPrefix(r, "jwe:")
		if !ok {
			return fmt.Errorf("imagesplit: recipient %q: only jwe:FILE is supported", r)
		}
		pem, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("imagesplit: read recipient key: %w", err)
		}
		o.Recipients = append(o.Recipients, layercrypt.JWERecipient{PublicKeyPEM: pem})
	}
	var kbsKey *layercrypt.KBSKey
	if *kid != "" {
		if *keyOut == "" {
			return errors.New("imagesplit: --kbs-key needs --key-out")
		}
		if kbsKey, err = layercrypt.NewKBSKey(*kid); err != nil {
			return fmt.Errorf("imagesplit: %w", err)
		}
		// The key is stored before the image exists: an image whose key
		// was lost could never be run.
		f, err := os.OpenFile(*keyOut, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("imagesplit: write key: %w", err)
		}
		_, err = f.Write(kbsKey.KEK)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("imagesplit: write key: %w", err)
		}
		o.Recipients = append(o.Recipients, kbsKey)
	}

	reps, err := imagesplit.Run(ctx, imagesplit.LayoutSource{Path: *in, Ref: *inRef},
		imagesplit.LayoutSink{Path: *out, Ref: *outRef}, o)
	if err != nil {
		return fmt.Errorf("imagesplit: %w", err)
	}
	for _, r := range reps {
		if r.Confidential {
			fmt.Printf("layer %d %s encrypted\n", r.Index, r.Digest)
		} else {
			fmt.Printf("layer %d %s verity root %s erofs %s\n", r.Index, r.Digest, r.RootHash, r.ErofsPath)
		}
	}
	if kbsKey != nil {
		fmt.Fprintf(os.Stderr, "register the key with the key broker before running the image:\n"+
			"  POST /kbs/v0/resource/%s with the body of %s and \"Authorization: Bearer <admin JWT>\"\n",
			kbsKey.ResourcePath(), *keyOut)
	}
	return nil
}

func imagesplitRule(ctx context.Context, layers, paths []string, above string) (imagesplit.Rule, error) {
	n := 0
	for _, set := range []bool{len(layers) > 0, len(paths) > 0, above != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("imagesplit: give exactly one of --confidential-layers, --confidential-path, --above-base")
	}
	switch {
	case len(layers) > 0:
		var idx imagesplit.ByIndex
		for _, s := range layers {
			i, err := strconv.Atoi(s)
			if err != nil {
				return nil, fmt.Errorf("imagesplit: --confidential-layers %q: %w", s, err)
			}
			idx = append(idx, i)
		}
		return idx, nil
	case len(paths) > 0:
		return imagesplit.ByPathPrefix(paths), nil
	default:
		base, err := imagesplit.LayoutSource{Path: above}.Image(ctx)
		if err != nil {
			return nil, fmt.Errorf("imagesplit: base image: %w", err)
		}
		return imagesplit.AboveBase(base)
	}
}
