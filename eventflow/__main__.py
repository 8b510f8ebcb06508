from eventflow.cli import main

main()
