"""The grid stage: what a grid file declares (``specs``), how a TOML file is read
and validated into a ``GridSpec`` (``parse``), the grid with its learning rates
resolved, as it runs and is stored (``resolved``), whether a stored grid may grow
into another (``growth``), learning-rate schedules as grid values
(``schedules``), and ``lrbench show``'s plan of a grid (``plan``)."""
