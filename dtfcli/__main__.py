from dtfcli.cli import main

main()
