// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice

/// What an image holds, told by its first pblk: the one rule that `cbd convert`, `cbd measure`
/// and `cbd compare` share. A valid header is a CBD. A CBD magic (or a resize marker) whose
/// header does not validate is a damaged CBD: refused, because taking it for raw data would
/// copy its metadata as if it were the user's bytes. Anything else is raw data.
public enum ImageKind: Sendable, Equatable {
    case cbd
    case raw

    /// The kind of `device`; throws a `.corrupt` error naming the device when it is a damaged CBD.
    public static func of(_ device: FileDevice) throws -> ImageKind {
        do {
            _ = try OpenedDevice(device, allowing: .interruptedUpdate)
            return .cbd
        } catch let e as CBDError {
            guard FileProbe.hasCBDMagic(device.path) else { return .raw }
            throw CBDError(
                "\(e.message); a damaged CBD device, not raw data: check it with fsck.cbd",
                hint: e.hint, kind: .corrupt)
        }
    }
}
