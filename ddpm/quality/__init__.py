"""Sample quality: a feature network per dataset, and FD / IS / precision / recall on it."""
