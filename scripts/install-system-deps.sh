#!/usr/bin/env bash
# System packages edgeres needs on Debian/Ubuntu: the embedded Fashion-MNIST dataset, sshd for the tests
# of the ssh device backend, qemu-user and debootstrap for the emulated ARM targets. Idempotent; uses sudo when not root.
set -euo pipefail
packages=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || packages+=(dataset-fashion-mnist)
[ -x /usr/sbin/sshd ] || packages+=(openssh-server)
command -v ssh >/dev/null || packages+=(openssh-client)
# emulated aarch64 targets: qemu-user runs the device's kernels, debootstrap builds the arm64 root
command -v qemu-aarch64-static >/dev/null || packages+=(qemu-user-static)
[ -x /usr/sbin/debootstrap ] || packages+=(debootstrap)
[ ${#packages[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing system packages: ${packages[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${packages[@]}"
