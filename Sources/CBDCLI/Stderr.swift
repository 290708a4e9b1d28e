// SPDX-License-Identifier: Apache-2.0
import Glibc

/// Unbuffered writes to standard error, for the tools' one-line messages.
public enum FileHandleStderr {
    public static func write(_ s: String) {
        var s = s
        s.withUTF8 { b in _ = Glibc.write(2, b.baseAddress, b.count) }
    }
}
