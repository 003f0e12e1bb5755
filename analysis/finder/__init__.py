"""The LR range test read back: suggestions by rule (``suggest``), their plots
(``finder_plots``), ``lrbench find-lr``'s summary (``summary``), and the ladders a
grid's ``lr = { finder = DIR }`` is resolved into (``finder_lrs``)."""
