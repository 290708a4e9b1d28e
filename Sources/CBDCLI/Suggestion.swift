// SPDX-License-Identifier: Apache-2.0
/// "Did you mean": the nearest of some names to a word that is none of them.
public enum Suggestion {
    /// The name nearest to `word` by edit distance, if it is near enough to be a typo.
    public static func nearest(_ word: String, among names: [String]) -> String? {
        let scored = names.map { ($0, distance(Array(word), Array($0))) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        return best.1 <= max(2, word.count / 3) || best.0.hasPrefix(word) ? best.0 : nil
    }

    /// Levenshtein distance: insertions, deletions and substitutions.
    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        var row = Array(0...b.count)
        for (i, ca) in a.enumerated() {
            var previous = row[0]
            row[0] = i + 1
            for (j, cb) in b.enumerated() {
                let saved = row[j + 1]
                row[j + 1] = min(row[j + 1] + 1, row[j] + 1, previous + (ca == cb ? 0 : 1))
                previous = saved
            }
        }
        return row[b.count]
    }
}
