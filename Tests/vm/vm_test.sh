#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A virtual machine whose root filesystem is an ext4 on a CBD served by `cbd serve`:
# qemu-system-x86_64 (TCG: a KVM guest hangs on these machines) boots Debian's cloud kernel
# with a busybox initramfs; the guest mounts /dev/vda, checks files it did not write
# (sha256sums made on the host), writes new ones, measures a dd read and write, syncs and
# powers off. On the host the device is then fsck.cbd -fn clean, e2fsck -fn clean after
# cbd convert, and the guest's files read back. Prints "vm: skipped: WHY" (exit 77) where
# qemu, the kernel or busybox are missing. Usage: vm_test.sh BIN_DIR [raw|qcow2|cbd]...
# (the extra kinds boot the same VM on the raw image and on qcow2 through qemu-nbd, for the
# throughput comparison). VM_TIMEOUT (default 180) bounds each boot.
set -euo pipefail
bin=${1:?usage: vm_test.sh BIN_DIR [kind...]}; shift
kinds=${*:-cbd}
skip() { echo "vm: skipped: $*"; exit 77; }
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
command -v busybox >/dev/null || skip "busybox is not installed (apt-get install busybox-static)"
kernel=$(ls /boot/vmlinuz-*cloud-amd64 2>/dev/null | sort -V | tail -1 || true)
[ -n "$kernel" ] || skip "no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64)"
[ -r "$kernel" ] || skip "$kernel is not readable"
version=${kernel#/boot/vmlinuz-}
mods=/lib/modules/$version
[ -d "$mods" ] || skip "no $mods"
{ ldd /usr/bin/busybox 2>&1 || true; } | grep -q "not a dynamic" || skip "busybox is not static (apt-get install busybox-static)"

work=$(mktemp -d /dev/shm/cbd-vm.XXXXXX 2>/dev/null || mktemp -d)
trap '[ -n "${VM_KEEP:-}" ] && echo "vm: kept $work" || rm -rf "$work"' EXIT
fail() { echo "vm: FAIL: $*"; exit 1; }

# The initramfs: busybox, the virtio modules (in modules.dep order) and /init.
root=$work/initramfs
mkdir -p "$root"/{bin,dev,proc,sys,mnt,modules}
cp /usr/bin/busybox "$root/bin/busybox"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
  f=$(grep -E "(^|/)$m\.ko(\.[a-z]+)?:" "$mods/modules.dep" | cut -d: -f1)
  [ -n "$f" ] || skip "module $m not found in $mods"
  case $f in
    *.xz) xz -dc "$mods/$f" > "$root/modules/$m.ko" ;;
    *.zst) zstd -qdc "$mods/$f" > "$root/modules/$m.ko" ;;
    *) cp "$mods/$f" "$root/modules/$m.ko" ;;
  esac
done
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
  insmod /modules/$m.ko || echo "VM: insmod $m failed"
done
n=0; while [ ! -b /dev/vda ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done; echo "VM: disks: $(ls /dev/vd* 2>&1)"
say() { echo "VM: $*"; }
if mount -t ext4 /dev/vda /mnt; then
  say "MOUNTED"
  cd /mnt
  if sha256sum -c -s host.sha256; then say "HOST FILES OK"; else say "HOST FILES BAD"; fi
  dd if=/dev/urandom of=/mnt/guest.bin bs=1M count=8 2>/dev/null
  say "WROTE guest.bin"
  sync
  say "SYNCED"
  # Throughput of 32 MiB (busybox dd prints no rate): timed with /proc/uptime.
  rate() { awk -v a="$1" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f MiB/s", 32 / (b - a) }'; }
  t=$(cut -d' ' -f1 /proc/uptime)
  dd if=/dev/zero of=/mnt/write.bin bs=1M count=32 conv=fsync 2>/dev/null
  say "WRITE $(rate "$t")"
  echo 3 > /proc/sys/vm/drop_caches
  t=$(cut -d' ' -f1 /proc/uptime)
  dd if=/mnt/write.bin of=/dev/null bs=1M 2>/dev/null
  say "READ $(rate "$t")"
  rm -f /mnt/write.bin
  sha256sum guest.bin > guest.sha256
  say "GUEST $(cat guest.sha256)"
  cd /; sync; umount /mnt && say "UNMOUNTED"
else
  say "MOUNT FAILED"
fi
say "UPTIME $(cut -d' ' -f1 /proc/uptime)"
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initramfs.gz"

# The root filesystem: files the guest did not write, with their checksums.
src=$work/src
mkdir -p "$src"
cp -r /usr/share/perl5/Debian "$src/" 2>/dev/null || cp -r /usr/share/doc "$src/docs"
head -c 3000000 /dev/urandom > "$src/random.bin"
(cd "$src" && find . -type f ! -name host.sha256 -print0 | xargs -0 sha256sum > host.sha256)
mke2fs -q -F -t ext4 -d "$src" "$work/root.img" 96M
"$bin/cbd" convert -q "$work/root.img" "$work/root.cbd"
# A compact CBD has 1/64 of headroom: room for what the guest writes (8 + 32 MiB, and ext4's own).
"$bin/cbd" resize "$work/root.cbd" +96M > /dev/null

# boot.sh KIND DRIVE: runs the VM (its console in KIND.log, its wall seconds in KIND.time):
# a file, so that `cbd serve --run` and qemu-nbd's captive mode can run it.
cat > "$work/boot.sh" <<BOOT
#!/bin/sh
t0=\$(date +%s.%N)
timeout ${VM_TIMEOUT:-180} qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot -nodefaults \\
  -serial stdio -kernel "$kernel" -initrd "$work/initramfs.gz" \\
  -append "console=ttyS0 panic=-1 quiet" -drive "\$2" > "$work/\$1.log" 2>&1
t1=\$(date +%s.%N)
awk -v a="\$t0" -v b="\$t1" 'BEGIN { printf "%.1f", b - a }' > "$work/\$1.time"
BOOT
report() {   # report KIND: what the guest said
  local kind=$1 up w r
  grep -q "VM: UNMOUNTED" "$work/$kind.log" || { tail -20 "$work/$kind.log"; fail "$kind: the guest did not finish (log above)"; }
  grep -q "VM: HOST FILES OK" "$work/$kind.log" || fail "$kind: the guest found the host's files damaged"
  up=$(sed -n 's/^VM: UPTIME //p' "$work/$kind.log" | tr -d '\r')
  w=$(sed -n 's/^VM: WRITE //p' "$work/$kind.log" | tr -d '\r')
  r=$(sed -n 's/^VM: READ //p' "$work/$kind.log" | tr -d '\r')
  echo "vm: $kind: $(cat "$work/$kind.time") s from start to power-off (guest uptime ${up} s), dd write ${w:-?}, dd read ${r:-?}"
}

for kind in $kinds; do
  case $kind in
    cbd)
      # Under make tsan the plugin needs the TSan runtime in nbdkit (CBD_SERVE_PRELOAD), which
      # scripts/tsan-nbdkit preloads there only; qemu goes without.
      pre=()
      if [ -n "${CBD_SERVE_PRELOAD:-}" ]; then pre=(env "PATH=$(cd "$(dirname "$0")/../../scripts/tsan-nbdkit" && pwd):$PATH"); fi
      "${pre[@]}" "$bin/cbd" serve "$work/root.cbd" --run "${CBD_SERVE_PRELOAD:+env -u LD_PRELOAD }sh $work/boot.sh cbd \"file=\$uri,format=raw,if=virtio,cache=none\"" \
        > "$work/serve.log" 2>&1 || { cat "$work/serve.log"; fail "cbd serve"; }
      report cbd
      # The host's view: a clean device, a clean filesystem, the guest's file as it wrote it.
      "$bin/fsck.cbd" -fn "$work/root.cbd" > "$work/fsck.log" 2>&1 || { cat "$work/fsck.log"; fail "fsck.cbd -fn after the guest"; }
      "$bin/cbd" convert -q "$work/root.cbd" "$work/after.img"
      e2fsck -fn "$work/after.img" > "$work/e2fsck.log" 2>&1 || { cat "$work/e2fsck.log"; fail "e2fsck -fn after the guest"; }
      want=$(sed -n 's/^VM: GUEST \([0-9a-f]*\) .*/\1/p' "$work/cbd.log" | tr -d '\r')
      got=$(debugfs -R "cat /guest.bin" "$work/after.img" 2>/dev/null | sha256sum | cut -d' ' -f1)
      [ -n "$want" ] && [ "$want" = "$got" ] || fail "guest.bin: the guest wrote $want, the host reads $got"
      echo "vm: cbd: fsck.cbd -fn clean, e2fsck -fn clean after cbd convert, guest.bin reads back ($got)"
      ;;
    raw)
      cp --sparse=always "$work/root.img" "$work/run.img"
      sh "$work/boot.sh" raw "file=$work/run.img,format=raw,if=virtio,cache=none"
      report raw
      ;;
    qcow2)
      qemu-img convert -c -O qcow2 -o compression_type=zstd "$work/root.img" "$work/run.qcow2"
      qemu-nbd --version >/dev/null 2>&1 || skip "qemu-nbd is not installed"
      qemu-nbd -f qcow2 -k "$work/qnbd.sock" -t "$work/run.qcow2" & qpid=$!
      for _ in $(seq 50); do [ -S "$work/qnbd.sock" ] && break; sleep 0.1; done
      sh "$work/boot.sh" qcow2 "file=nbd+unix:///?socket=$work/qnbd.sock,format=raw,if=virtio,cache=none"
      kill $qpid 2>/dev/null || true; wait $qpid 2>/dev/null || true
      report qcow2
      ;;
    *) fail "unknown kind $kind (raw, qcow2, cbd)" ;;
  esac
done
