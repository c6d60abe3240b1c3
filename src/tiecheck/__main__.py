from tiecheck.cli import main

main()
