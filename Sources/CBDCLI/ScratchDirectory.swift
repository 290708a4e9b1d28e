// SPDX-License-Identifier: Apache-2.0
import Glibc

/// Where the tools keep temporary data that may be as large as a device: $TMPDIR, else
/// /var/tmp (on disk; /tmp is often a small tmpfs), as the FHS intends for large files.
public enum ScratchDirectory {
    public static var path: String {
        guard let t = getenv("TMPDIR"), t.pointee != 0 else { return "/var/tmp" }
        return String(cString: t)
    }
}
