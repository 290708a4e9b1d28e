// SPDX-License-Identifier: Apache-2.0
import CBDDevice
import CBDVolume

/// The logical contents of an image, whatever it is: a CBD's logical device (unallocated
/// blocks as holes) or a raw image or block device as it is. What `cbd compare` reads.
public enum LogicalImage {
    /// Opens `path` for reading: a CBD when its header is valid, raw data otherwise; a device
    /// whose CBD header is damaged is refused, not taken for raw data.
    public static func open(_ path: String) throws -> any BlockDevice {
        let device = try FileDevice(path: path, mode: .readOnly)
        guard try ImageKind.of(device) == .cbd else { return device }
        return try LogicalDevice(device: device)
    }
}
