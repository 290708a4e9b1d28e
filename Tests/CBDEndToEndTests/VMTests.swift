// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDTestSupport

/// A virtual machine booted with its root filesystem on a CBD served by `cbd serve`
/// (Tests/vm/vm_test.sh: qemu TCG, Debian's cloud kernel, a busybox initramfs). Skipped, and
/// reported so, where qemu, the kernel or busybox-static is missing (make deps installs them).
@Suite struct VMTests {
    static let script = FsckTests.corpus + "/../vm/vm_test.sh"
    static var canRun: Bool {
        Tools.available("qemu-system-x86_64") && Tools.available("busybox")
            && ((try? FileManager.default.contentsOfDirectory(atPath: "/boot")) ?? []).contains {
                $0.hasPrefix("vmlinuz-") && $0.hasSuffix("cloud-amd64")
            }
    }

    @Test(.enabled(if: VMTests.canRun, "needs qemu-system-x86_64, linux-image-cloud-amd64 and busybox-static"))
    func guestOnACBD() throws {
        let r = try Tools.run("bash", [Self.script, Tools.binDir, "cbd"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(
            r.stdout.contains("vm: cbd: fsck.cbd -fn clean, e2fsck -fn clean after cbd convert, guest.bin reads back"),
            "\(r.stdout)")
    }
}
