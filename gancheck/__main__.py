from gancheck.cli import main

main()
