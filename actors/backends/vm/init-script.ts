// /init of the guest image: a busybox shell that mounts the kernel filesystems, loads the
// virtio and 9p modules, and runs the guest agent named on the kernel command line on its
// virtio-serial port(s). When the agent exits, the VM powers off, so qemu's exit is the
// guest's exit. `virtactors.probe=1` only reports that the kernel reached /init.
export const GUEST_ROOT = '/opt/virtactors';

export function initScript(modules: readonly string[]): string {
  return `#!/bin/busybox sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# The initramfs is the kernel's rootfs, which pivot_root(2) cannot leave: an OCI runtime
# would then refuse every container (or need --no-pivot, a chroot a container can climb
# out of). So the image is bind-mounted onto itself and entered: / is then an ordinary
# mount, and crun pivots into container roots as on any host.
if [ "$1" != rooted ]; then
  mkdir -p /.root && mount -o bind / /.root && cd /.root && mount -o move . / && exec chroot . /init rooted
  echo "virtactors-init: cannot leave the rootfs; containers will not start"
fi
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o nosuid dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o nosuid,noexec,gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=1777 shm /dev/shm
mount -t tmpfs -o nosuid,nodev,mode=755 run /run
mount -t tmpfs -o nosuid,nodev,mode=1777 tmp /tmp
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
agent= probe= share= accel=
for word in $(cat /proc/cmdline); do
  case "$word" in
    virtactors.agent=*) agent=\${word#virtactors.agent=} ;;
    virtactors.share=*) share=\${word#virtactors.share=} ;;
    virtactors.accel=*) accel=\${word#virtactors.accel=} ;;
    virtactors.probe=1) probe=1 ;;
  esac
done
if [ -n "$probe" ]; then echo virtactors-probe-ok; poweroff -f; fi
for m in ${modules.join(' ')}; do insmod /lib/modules/$m || echo "virtactors-init: insmod $m failed"; done
# The share is mounted now, where the agent will be asked to (kata 1.x's storage mount
# point, hyperstart's shared root): under TCG a 9p mount costs half a second, which a VM
# waiting in the pool has already paid. The agent finds it mounted and goes on.
case "$agent" in
  kata) sharedir=/run/kata-containers/shared/containers ;;
  hyperstart) sharedir=/run/hyperstart/shared ;;
esac
if [ -n "$share" ] && [ -n "$sharedir" ]; then
  mkdir -p "$sharedir" && mount -t 9p -o trans=virtio,version=9p2000.L,nodev "$share" "$sharedir" || echo "virtactors-init: cannot mount the share $share"
fi
hostname sandbox
ip link set lo up 2>/dev/null
cd /
# Blocking reads and writes on the serial ports each hold a thread-pool thread.
export UV_THREADPOOL_SIZE=16 HOME=/root LANG=C.UTF-8 VC_GUEST_ACCEL=$accel
case "$agent" in
  kata) node ${GUEST_ROOT}/kata-agent/main.js --serial agent.channel.0 --reaper on ;;
  hyperstart) node ${GUEST_ROOT}/hyperstart/main.js --serial --reaper on ;;
  *) echo "virtactors-init: unknown agent '$agent'" ;;
esac
echo "virtactors-init: the guest agent exited with status $?"
poweroff -f
`;
}
