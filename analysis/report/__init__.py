"""The report folder of a sweep: figures, tables and ``index.html`` (``writer``,
``page``), and the pure analyses and plots only the report uses: valleys
(``plots``, ``success_plots``), width scaling (``scaling``, ``scaling_plots``),
pitfall shifts (``shifts``) and devices (``devices``)."""
