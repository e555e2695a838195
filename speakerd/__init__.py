"""speakerd: a push-to-talk voice assistant on Deepgram's Voice Agent API."""

__version__ = "0.1.0"
