"""The example suite imports its little agent system from this folder."""
