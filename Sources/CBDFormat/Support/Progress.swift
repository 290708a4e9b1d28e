// SPDX-License-Identifier: Apache-2.0
/// What a long-running library operation tells as it goes: (done, total), in the unit the
/// operation documents (bytes, zones, pblks). The tools draw it (`ProgressBar`); the library
/// never prints.
public typealias ProgressHandler = (Int, Int) -> Void
