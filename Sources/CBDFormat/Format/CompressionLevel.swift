// SPDX-License-Identifier: Apache-2.0
/// How hard a writer compresses, numbered as the lz4 tool numbers it: 1 is LZ4's fast mode
/// (the default), 2 to 12 are LZ4HC's levels. Every level writes plain LZ4 block data, read by
/// the same decoder at the same speed (format-v1 names no level): a higher level only costs
/// writing time, for fewer pblks. The level is a writer's choice, never stored on the device.
public struct CompressionLevel: Equatable, Hashable, Sendable, CustomStringConvertible {
    public let value: Int

    public static let range = 1...12
    public static let fast = CompressionLevel(checked: 1)

    /// A level in `range`; nil otherwise.
    public init?(_ value: Int) {
        guard CompressionLevel.range.contains(value) else { return nil }
        self.value = value
    }

    private init(checked value: Int) { self.value = value }

    /// Whether LZ4HC compresses at this level.
    public var isHighCompression: Bool { value >= 2 }

    public var description: String { "\(value)" }
}
