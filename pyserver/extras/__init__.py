"""What applications build on, beyond the protocol: :mod:`.statesync` (a snapshot plus
numbered deltas, for state shared by a room: a drawing board, a game). Sans-IO."""
