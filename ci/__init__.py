"""Release helpers that run inside GitHub Actions after the relay fires
``repository_dispatch``: they fetch what an App Store Connect event points at
and carry out the matching automation."""
