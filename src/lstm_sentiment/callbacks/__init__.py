"""Lightning callbacks: TensorBoard extras, test accuracy by review length, LSTM gate statistics."""
