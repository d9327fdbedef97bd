      *----------------------------------------------------------------
      * COPYBOOK:  LNMASTR
      * TITLE:     LOAN MASTER RECORD (DD LOANMAST, KSDS, 361 BYTES)
      *
      * ONE RECORD PER BOARDED LOAN, KEYED BY LM-LOAN-NUMBER (1-10).
      *   WRITTEN BY   LONIN1 (NEW LOAN BOARDING)
      *   UPDATED BY   LONPF2 (BALANCES, DUE DATE, LAST PAYMENT)
      *                LONDL1 (DELINQUENCY BUCKET, LATE FEE BALANCE)
      *                LONES1 (ESCROW PAYMENT AFTER ESCROW ANALYSIS)
      *   READ BY      LONAM1, LONST1, LONPO1, LONRC1
      *
      * CONVENTIONS:
      *   - AMOUNTS ARE PACKED DECIMAL WITH TWO IMPLIED DECIMALS.
      *   - DATES ARE CCYYMMDD; ZERO MEANS "NONE YET".
      *   - LM-ANNUAL-RATE IS A FRACTION, E.G. .062500 = 6.25 PCT.
      *   - LM-PI-PAYMENT IS THE MONTHLY PRINCIPAL AND INTEREST; THE
      *     FULL MONTHLY INSTALLMENT IS LM-PI-PAYMENT PLUS
      *     LM-ESCROW-PAYMENT.
      *   - LM-NEXT-DUE-DATE IS THE OLDEST UNPAID INSTALLMENT.
      *   - LM-UNAPPLIED-BAL HOLDS PARTIAL PAYMENTS (SUSPENSE) THAT
      *     HAVE NOT YET COVERED A FULL INSTALLMENT.
      *----------------------------------------------------------------
       01  LOAN-MASTER-RECORD.
           05  LM-LOAN-NUMBER              PIC X(10).
           05  LM-BORROWER-INFO.
               10  LM-BORROWER-NAME        PIC X(30).
               10  LM-CO-BORROWER-NAME     PIC X(30).
               10  LM-MAIL-ADDR-1          PIC X(30).
               10  LM-MAIL-ADDR-2          PIC X(30).
               10  LM-MAIL-CITY            PIC X(20).
               10  LM-MAIL-STATE           PIC X(02).
               10  LM-MAIL-ZIP             PIC X(10).
           05  LM-LOAN-TERMS.
               10  LM-PRODUCT-CODE         PIC X(03).
                   88  LM-PROD-FIXED-30        VALUE 'F30'.
                   88  LM-PROD-FIXED-15        VALUE 'F15'.
                   88  LM-PROD-HOME-EQUITY     VALUE 'HEL'.
                   88  LM-PROD-VALID           VALUE 'F30' 'F15' 'HEL'.
               10  LM-ORIG-AMOUNT          PIC S9(9)V99  COMP-3.
               10  LM-ANNUAL-RATE          PIC SV9(6)    COMP-3.
               10  LM-TERM-MONTHS          PIC S9(3)     COMP-3.
               10  LM-NOTE-DATE            PIC 9(08).
               10  LM-FIRST-DUE-DATE       PIC 9(08).
               10  LM-MATURITY-DATE        PIC 9(08).
               10  LM-BOARD-DATE           PIC 9(08).
           05  LM-PAYMENT-INFO.
               10  LM-PI-PAYMENT           PIC S9(7)V99  COMP-3.
               10  LM-ESCROW-PAYMENT       PIC S9(7)V99  COMP-3.
               10  LM-NEXT-DUE-DATE        PIC 9(08).
               10  LM-INT-PAID-TO-DATE     PIC 9(08).
               10  LM-LAST-PAID-DATE       PIC 9(08).
               10  LM-LAST-PAID-AMOUNT     PIC S9(7)V99  COMP-3.
               10  LM-PAYMENTS-MADE        PIC S9(3)     COMP-3.
           05  LM-BALANCES.
               10  LM-PRINCIPAL-BAL        PIC S9(9)V99  COMP-3.
               10  LM-ESCROW-BAL           PIC S9(7)V99  COMP-3.
               10  LM-UNAPPLIED-BAL        PIC S9(7)V99  COMP-3.
               10  LM-LATE-FEE-BAL         PIC S9(5)V99  COMP-3.
               10  LM-YTD-INTEREST-PAID    PIC S9(7)V99  COMP-3.
           05  LM-STATUS-INFO.
               10  LM-LOAN-STATUS          PIC X(01).
                   88  LM-STAT-ACTIVE          VALUE 'A'.
                   88  LM-STAT-PAID-IN-FULL    VALUE 'P'.
                   88  LM-STAT-CHARGED-OFF     VALUE 'C'.
                   88  LM-STAT-CLOSED          VALUE 'P' 'C'.
               10  LM-HOLD-CODE            PIC X(01).
                   88  LM-NO-HOLD              VALUE SPACE.
                   88  LM-HOLD-BANKRUPTCY      VALUE 'B'.
                   88  LM-HOLD-FORECLOSURE     VALUE 'F'.
                   88  LM-HOLD-LITIGATION      VALUE 'L'.
               10  LM-DELINQ-BUCKET        PIC X(01).
                   88  LM-DQ-CURRENT           VALUE '0'.
                   88  LM-DQ-30-DAYS           VALUE '1'.
                   88  LM-DQ-60-DAYS           VALUE '2'.
                   88  LM-DQ-90-DAYS           VALUE '3'.
                   88  LM-DQ-120-PLUS          VALUE '4'.
               10  LM-DAYS-PAST-DUE        PIC S9(5)     COMP-3.
               10  LM-LAST-LATE-FEE-DUE    PIC 9(08).
           05  LM-ESCROW-INFO.
               10  LM-ESCROW-FLAG          PIC X(01).
                   88  LM-HAS-ESCROW           VALUE 'Y'.
                   88  LM-NO-ESCROW            VALUE 'N'.
               10  LM-ESCROW-ANALYSIS-MM   PIC 9(02).
               10  LM-LAST-ANALYSIS-DATE   PIC 9(08).
               10  LM-ESCROW-SHORTAGE      PIC S9(7)V99  COMP-3.
           05  LM-AUDIT-INFO.
               10  LM-LAST-MAINT-DATE      PIC 9(08).
               10  LM-LAST-MAINT-PGM       PIC X(08).
           05  FILLER                      PIC X(40).
