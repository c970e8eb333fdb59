"""The process around the stages: device and execution mode, the data-parallel world,
signals, atomic writes and the Hydra callbacks of a sweep."""
