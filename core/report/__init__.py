"""What users look at and read: log handlers, progress lines, plots."""
