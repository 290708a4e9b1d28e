// SPDX-License-Identifier: Apache-2.0
import ArgumentParser

/// `-E` extended options, comma-separated `name=value` as mke2fs takes them. The one there is:
/// `resize=SIZE`, the logical size the device can grow to in place (its tables are sized for
/// it, as mke2fs's resize= reserves group descriptor blocks).
public struct ExtendedOptions: ExpressibleByArgument, Sendable {
    public var resize: Int?

    public init?(argument: String) {
        guard !argument.isEmpty else { return nil }
        for item in argument.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, parts[0] == "resize", let bytes = ByteSize.parse(parts[1]), bytes > 0 else {
                return nil
            }
            resize = bytes
        }
    }

    public static var defaultCompletionKind: CompletionKind { .list(["resize="]) }
}
