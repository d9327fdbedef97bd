      *----------------------------------------------------------------
      * COPYBOOK:  LNPAYREC
      * TITLE:     LOAN PAYMENT RECORD  (DD LOANPAY, 80 BYTES, FB)
      *
      * ONE DETAIL RECORD PER PAYMENT RECEIVED TODAY FROM ANY CHANNEL
      * (ACH, LOCKBOX, TELLER, ONLINE), FOLLOWED BY ONE TRAILER RECORD
      * CARRYING THE RECORD COUNT AND DOLLAR TOTAL OF THE DETAILS.
      * THE FILE IS SORTED BY RECORD TYPE, LOAN NUMBER, PAYMENT DATE
      * AND BATCH/SEQUENCE IN THE NIGHTLY JOB BEFORE LONPF2 READS IT.
      *
      * LP-PAYMENT-TYPE:
      *   R  REGULAR INSTALLMENT - INTEREST, PRINCIPAL, ESCROW, FEES
      *   P  PRINCIPAL ONLY      - ENTIRE AMOUNT REDUCES PRINCIPAL
      *   E  ESCROW ONLY         - ENTIRE AMOUNT GOES TO ESCROW BALANCE
      * LP-PAYMENT-DATE IS THE DATE THE FUNDS WERE RECEIVED AND IS THE
      * EFFECTIVE DATE OF THE PAYMENT; IT MAY NOT BE IN THE FUTURE.
      *----------------------------------------------------------------
       01  LOAN-PAYMENT-RECORD.
           05  LP-RECORD-TYPE              PIC X(01).
               88  LP-DETAIL                   VALUE 'D'.
               88  LP-TRAILER                  VALUE 'T'.
           05  LP-DETAIL-DATA.
               10  LP-LOAN-NUMBER          PIC X(10).
               10  LP-PAYMENT-DATE         PIC 9(08).
               10  LP-PAYMENT-AMOUNT       PIC 9(07)V99.
               10  LP-PAYMENT-TYPE         PIC X(01).
                   88  LP-TYPE-REGULAR         VALUE 'R'.
                   88  LP-TYPE-PRIN-ONLY       VALUE 'P'.
                   88  LP-TYPE-ESCROW-ONLY     VALUE 'E'.
                   88  LP-TYPE-VALID           VALUE 'R' 'P' 'E'.
               10  LP-PAYMENT-SOURCE       PIC X(01).
                   88  LP-SRC-ACH              VALUE 'A'.
                   88  LP-SRC-LOCKBOX          VALUE 'L'.
                   88  LP-SRC-TELLER           VALUE 'T'.
                   88  LP-SRC-ONLINE           VALUE 'W'.
               10  LP-BATCH-ID             PIC X(06).
               10  LP-SEQUENCE-NO          PIC 9(05).
               10  LP-CHECK-NUMBER         PIC X(10).
               10  FILLER                  PIC X(29).
           05  LP-TRAILER-DATA REDEFINES LP-DETAIL-DATA.
               10  LP-TRL-RECORD-COUNT     PIC 9(07).
               10  LP-TRL-TOTAL-AMOUNT     PIC 9(11)V99.
               10  FILLER                  PIC X(59).
