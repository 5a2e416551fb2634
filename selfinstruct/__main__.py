"""`python -m selfinstruct`: the same CLI. The guard matters: vLLM starts its engine in a spawned process,
which re-imports the main module."""

from selfinstruct.entry import main

if __name__ == "__main__":
    main()
