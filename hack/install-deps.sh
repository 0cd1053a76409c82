#!/usr/bin/env bash
# Installs the Debian packages scc needs to build, test and run VMs.
# Idempotent: it installs only what is missing.
set -euo pipefail

packages=(
  qemu-system-x86 qemu-utils   # the VMM (TCG here, KVM where the CPU has vmx/svm)
  ovmf                         # UEFI firmware: the EFI boot path of confidential VMs, tested with plain VMs
  seabios                      # the VMs' firmware (a VM generation ID needs it; qboot cannot)
  swtpm swtpm-tools            # a vTPM per VM
  busybox-static               # the demo and test image
  erofs-utils cryptsetup-bin   # integrity-protected shared layers (mkfs.erofs, veritysetup)
  xz-utils zstd cpio           # guest kernel extraction
  protobuf-compiler            # make protos
  libseccomp-dev               # static seccomp support in the agent
  runc                         # the baseline runtime of the benchmark
  containernetworking-plugins  # pod networks in the CRI tests
  iproute2 util-linux git ca-certificates build-essential
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The guest image build downloads Debian's kernel package (never installs
# it): that needs the package lists even when nothing above was missing.
if ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
  apt-get update -qq
fi
