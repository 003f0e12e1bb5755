"""Nightly judgement: the noise threshold of the last good nights (``noise``), a
night compared with its baseline (``compare``), the verdict (``judge``), and the
trend report (``trend_plots``, ``render``)."""
