/// What a conversion did, for the tools' summary lines.
public struct ConvertSummary: Sendable {
    public var inputBytes = 0
    public var logicalBytes = 0
    public var physicalBytes = 0
    public var blocks = 0
    public var compressedBlocks = 0
    public var rawBlocks = 0
    public var unallocatedBlocks = 0
    public var dataPblks = 0

    public init() {}

    /// Logical bytes per byte of data pblks actually used.
    public var ratio: Double { dataPblks == 0 ? 0 : Double(logicalBytes) / Double(dataPblks * Units.pblkSize) }
}

/// Progress reports: (bytes done, bytes total).
public typealias ProgressHandler = (Int, Int) -> Void
