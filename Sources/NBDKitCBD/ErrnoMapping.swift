// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import Glibc

/// What the plugin answers an NBD client for a library error: the errno of its kind (an NBD
/// concern, kept here beside the plugin; the library only says what kind of failure it was).
extension CBDError {
    var nbdErrno: Int32 {
        switch kind {
        case .other: return EIO
        case .noSpace: return ENOSPC
        case .readOnly: return EROFS
        case .outOfRange: return EINVAL
        case .busy: return EBUSY
        case .corrupt: return EIO
        case .system(let code): return code
        }
    }
}
