"""Stage 7, evaluation: a feature network per dataset, FD / IS / precision / recall on it,
bits/dim, and the metrics a run reports."""
