"""Training the bridge: objectives shared by the demo build and the personalization trainers."""
