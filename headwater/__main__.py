"""``python -m headwater`` runs the CLI."""

from headwater.cli.app import main

main()
