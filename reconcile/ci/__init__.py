"""What the GitHub Action and the GitLab CI/CD component run (`reconcile-ci`): plan every state
file, keep one plan comment per pull request up to date, find the checksums a merged request
reviewed, and apply exactly those.

`forge` speaks to GitHub's and GitLab's REST APIs (the comments only; Tallyfy's API stays with
reconcile.tallyfy); `review` runs reconcile and writes the comment; the command is
reconcile.cli.ci.
"""
