"""Domain code shared by every batchpipe Lambda function (one CodeUri, so never copied)."""
