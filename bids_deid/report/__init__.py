"""Reports: the run report (HTML) and the defacing QC page; private side only."""
